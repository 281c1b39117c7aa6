// InferOpsHelm
