"""Files in, model inputs out: image decoding and preprocessing (:mod:`.images`)."""
