"""Detection: SSD architectures (models), anchors, box coding and NMS (boxes), the multibox loss
(loss), training (train), inference (detect) and model files (model_io)."""
