"""Traffic quality: which clicks and conversions are taken at face value, and why not.

Nothing is dropped: a doubtful event is stored with its reasons in ``flags`` (the closed set of
``flags.Flag``) and left out of what is billed. ``agents`` tells bots from browsers by their
user agent; ``windows`` counts per visitor and per network prefix in Redis (uniqueness, duplicate
clicks, rate limits, conversion bursts), one script call per batch. The worker's enrichment
(``backend.worker.pipeline``) runs the rules as steps and decides what each flag costs.
"""
