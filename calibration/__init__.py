"""depthart.calibration: fp16 / int8 calibration feeds and accuracy reports.

Not built yet (issue "Precision").
"""
