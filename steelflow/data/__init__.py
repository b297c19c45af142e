"""The data layer: sources, the manifest, image I/O, corruptions and the decoded-image cache."""
