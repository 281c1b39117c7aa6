// InferOpsConsole
