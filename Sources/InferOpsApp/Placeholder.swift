// InferOpsApp
