"""Where recorders come from: udev block devices, a watched mount root, and their file trees."""
