"""Floor 1, images in: the gate that admits or rejects a file, decoding and resizing to a backbone's input,
and the book's augmentation as one affine warp. Imports core only.
"""
