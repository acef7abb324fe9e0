"""Open Inference Protocol (KServe v2) wire formats: datatypes, tensors, BYTES, classification."""
