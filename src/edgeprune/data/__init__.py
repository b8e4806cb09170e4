"""Data: Pascal VOC reading (voc), the generated VOC-format data set (synthetic), training arrays
(dataset), augmentation (augment) and the demo video clip (video)."""
