// The router adapters.
