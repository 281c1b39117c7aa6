// InferOpsStore
