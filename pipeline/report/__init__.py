"""Stage report: every result of the pipeline on one offline HTML page (report/index.html), read from the other
stages' output files. Floor 3: imports core, store and the libraries below, never another stage."""
