"""Caffe's model schema (the part bwserve reads) and its generated Python module."""
