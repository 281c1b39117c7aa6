// InferOpsTesting
