"""Measurement: VOC mAP (evaluate) with bootstrap intervals (bootstrap), benchmark targets
(targets), latency statistics (latency), interleaved timing comparisons (compare), application FPS
(app_fps) and the device layer that reaches adb/SSH boards (devices)."""
