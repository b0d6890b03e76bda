"""No-Docker local runtime: runs template.yaml's functions on moto (server mode) and localstripe.

python -m local_runtime run            # the whole stack in the foreground (make run)
python -m local_runtime demo           # start, run the scenario over HTTP, report (make demo)
python -m local_runtime trigger <FunctionLogicalId>
python -m local_runtime invoke <FunctionLogicalId> -e events/<source>/<scenario>.json
"""
