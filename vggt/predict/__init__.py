"""`vggt predict` and `vggt view`: images or a video in, cameras, depth, point clouds and a COLMAP model out.

One module per step: `inputs` and `video` find the frames, `inference` loads and runs the model, `cameras` tells
the usable predicted cameras apart, `geometry` maps model pixels back to the original images, `points` filters the
point cloud, one writer per export (`depth_png` with `colormap`, `ply`, `glb` with `frustum`, `colmap`, `render`),
`tracks` and `bundle_adjust` build the bundle-adjusted COLMAP model from the track head, `ownership` proves which
entries of the output directory are predict's own, `staging` swaps a run's outputs in whole or not at all,
`nofollow` reaches every name below the output directory without following a link,
`pipeline` ties them together and `viewer` serves an output in the browser.
"""
