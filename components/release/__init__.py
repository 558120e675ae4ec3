"""The release wing: one environment's app release and the image contract it follows."""
