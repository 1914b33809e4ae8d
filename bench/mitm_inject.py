"""mitmproxy (8.x) addon for bench/forward.sh: the mitmdump peer of the forward-mode benchmark.

  mitmdump -s bench/mitm_inject.py --set bench_host=registry.test \
           --set bench_auth='Basic YmVuY2h1c2VyOmJlbmNocGFzcw=='

bench_host: requests to this host name get "Authorization: <bench_auth>" (what the Connectors proxy
            does with the connector's credentials), and its upstream connections go to 127.0.0.1
            (the TLS SNI and Host stay the name), so mitmproxy resolves nothing. Connections to any
            other host are refused: the benchmark only talks to loopback.
"""

from mitmproxy import ctx, http


class BenchInject:
    def load(self, loader):
        loader.add_option("bench_host", str, "", "host name to intercept and map to 127.0.0.1")
        loader.add_option("bench_auth", str, "", "Authorization header value to inject")

    def server_connect(self, data):
        host, port = data.server.address
        if host != ctx.options.bench_host:
            data.server.error = f"bench: refusing upstream {host}:{port}"
            return
        data.server.address = ("127.0.0.1", port)

    def requestheaders(self, flow: http.HTTPFlow):
        if flow.request.pretty_host == ctx.options.bench_host and ctx.options.bench_auth:
            flow.request.headers["Authorization"] = ctx.options.bench_auth


addons = [BenchInject()]
