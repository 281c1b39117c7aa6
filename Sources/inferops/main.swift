print("inferops")
