"""One module per pipeline step; each has one public entry function that DVC and Kubeflow both call."""
