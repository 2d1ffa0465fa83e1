"""Optional tools beside the device core: file readers, DICOM, benchmarking, environment fingerprint, tables.

The core (``import medinfer``) never imports this package; each tool imports only the core's public names.
"""
