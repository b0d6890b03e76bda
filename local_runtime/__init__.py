"""No-Docker local runtime: runs a SAM template's functions on moto (server mode), with the peers and local
secrets of the project's profile (this bundle's: local_profile/, localstripe as its Stripe peer).

python -m local_runtime run            # the whole stack in the foreground (make run)
python -m local_runtime demo           # start, run the profile's scenario over HTTP, report (make demo)
python -m local_runtime trigger <FunctionLogicalId>
python -m local_runtime invoke <FunctionLogicalId> -e events/<source>/<scenario>.json

The engine is generic: it never imports the profile or the product (docs/decisions/0015)."""
