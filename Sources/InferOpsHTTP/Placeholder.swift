// InferOpsHTTP
