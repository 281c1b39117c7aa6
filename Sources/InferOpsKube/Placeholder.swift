// InferOpsKube
