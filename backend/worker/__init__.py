"""The worker: stream -> pipeline of steps (decode, validate, attribute, classify, price) ->
one transaction per batch -> XACK."""
