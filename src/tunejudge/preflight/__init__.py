"""Before a paid run: checks that the outside world answers (:mod:`.checks`) and the requests the run
will send, counted and priced (:mod:`.plan`). It sits above every stage, whose plans it reads."""
