"""Line-art colorization library: models, pre/post-processing and the Colorizer pipeline."""
