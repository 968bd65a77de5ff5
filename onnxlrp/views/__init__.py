"""Arrays in, pixels and HTML out: colour maps, heatmaps, overlays and grids (:mod:`.imaging`), the HTML report
(:mod:`.report`) and the token view of text explanations (:mod:`.tokens`)."""
