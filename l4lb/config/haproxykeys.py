"""
HAProxy's keywords that l4lb does not take from a C{haproxy.cfg}, and why.

A keyword that only makes sense for HTTP is in L{HTTP_ONLY}; a TCP-mode
keyword l4lb does not implement is in L{NOT_IMPLEMENTED} with what to use
instead; a keyword whose work twistd or the service manager does is in
L{PROCESS}.  Neither is ever dropped silently: the reader reports each as an
error, except the few in L{NOTED}, which are reported as warnings because
l4lb already does what they ask.  C{docs/haproxy.md} lists them too.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Optional

#: Keywords (first word, or C{option X} / C{timeout X} / C{stats X}) that
#: act on HTTP requests and responses.
HTTP_ONLY: FrozenSet[str] = frozenset(
    {
        "capture",
        "compression",
        "cookie",
        "declare",
        "errorfile",
        "errorfiles",
        "errorloc",
        "errorloc302",
        "errorloc303",
        "http-after-response",
        "http-check",
        "http-error",
        "http-request",
        "http-response",
        "http-reuse",
        "http-send-name-header",
        "monitor",
        "monitor-uri",
        "redirect",
        "retry-on",
        "unique-id-format",
        "unique-id-header",
        "use-fcgi-app",
        "option accept-invalid-http-request",
        "option accept-invalid-http-response",
        "option checkcache",
        "option forwardfor",
        "option h1-case-adjust-bogus-client",
        "option h1-case-adjust-bogus-server",
        "option http-buffer-request",
        "option http-ignore-probes",
        "option http-keep-alive",
        "option http-no-delay",
        "option http-pretend-keepalive",
        "option http-restrict-req-hdr-names",
        "option http-server-close",
        "option http-use-proxy-header",
        "option httpchk",
        "option httpclose",
        "option httplog",
        "option httpslog",
        "option originalto",
        "timeout http-keep-alive",
        "timeout http-request",
        "timeout tarpit",
        "stats admin",
        "stats enable",
        "stats hide-version",
        "stats realm",
        "stats refresh",
        "stats scope",
        "stats show-desc",
        "stats show-legends",
        "stats show-node",
        "stats uri",
    }
)

#: TCP-mode keywords l4lb does not implement, and what to use instead.
NOT_IMPLEMENTED: Dict[str, str] = {
    "acl": "l4lb has no named ACLs; write the condition in the rule itself:"
    " 'tcp-request connection reject if { src -f FILE }', or"
    " 'use_backend NAME if { req.ssl_sni -i HOST }'",
    "tcp-request content": "the only content rule l4lb reads is"
    " 'tcp-request content accept if { req.ssl_hello_type 1 }' in a frontend"
    " that routes by TLS server name; filter sources with 'tcp-request connection'",
    "tcp-request session": "filter sources with 'tcp-request connection' rules",
    "tcp-response": "l4lb relays the server's bytes without inspecting them",
    "use-server": "l4lb picks servers by the backend's 'balance' algorithm only",
    "stick": "l4lb keeps no persistence table; 'balance source' with"
    " 'hash-type consistent' sends a client to the same server",
    "source": "l4lb connects to servers from the address the kernel chooses",
    "fullconn": "l4lb has no dynamic maxconn; set 'maxconn' on each server",
    "dispatch": "write a backend with one 'server' line",
    "bind-process": "with 'nbproc N' every worker shares every TCP listener",
    "email-alert": "follow the log lines 'Server B/S is DOWN' instead",
    "external-check": "use 'option tcp-check' with tcp-check send/expect rules",
    "persist": "l4lb keeps no persistence table",
    "option abortonclose": "l4lb closes a queued connection when its client leaves",
    "option clitcpka": "l4lb does not set TCP keep-alive; use timeouts",
    "option srvtcpka": "l4lb does not set TCP keep-alive; use timeouts",
    "option tcpka": "l4lb does not set TCP keep-alive; use timeouts",
    "option contstats": "l4lb counts bytes as they pass",
    "option dontlog-normal": "every connection is logged; 'option dontlognull'"
    " leaves out those that carried no data",
    "option log-separate-errors": "every connection is logged at level info",
    "option logasap": "l4lb logs a connection when it ends",
    "option independent-streams": "'timeout client' and 'timeout server' count"
    " activity in either direction, as without this option",
    "option ldap-check": "use 'option tcp-check' with send-binary/expect rules",
    "option mysql-check": "use 'option tcp-check' with send-binary/expect rules",
    "option pgsql-check": "use 'option tcp-check' with send-binary/expect rules",
    "option redis-check": "use 'option tcp-check' with 'tcp-check send PING\\r\\n'"
    " and 'tcp-check expect string +PONG'",
    "option smtpchk": "use 'option tcp-check' with 'tcp-check expect string 220'",
    "option spop-check": "use 'option tcp-check' with send-binary/expect rules",
    "option ssl-hello-chk": "use 'check-ssl' on the server (a TLS handshake)",
    "option nolinger": "l4lb closes sockets normally",
    "option prefer-last-server": "l4lb keeps no per-client server memory",
    "option socket-stats": "l4lb keeps statistics per proxy and per server",
    "option splice-auto": "the lean relay ('tune.relay lean', the default)"
    " splices bulk transfers by itself; 'maxpipes' bounds it",
    "option splice-request": "the lean relay splices bulk transfers by itself",
    "option splice-response": "the lean relay splices bulk transfers by itself",
    "option tcp-smart-accept": "l4lb accepts as the kernel delivers",
    "option tcp-smart-connect": "l4lb connects as the kernel delivers",
    "option transparent": "l4lb connects to the servers' own addresses",
    "option persist": "l4lb keeps no persistence table",
    "timeout tunnel-fin": "use 'timeout client-fin' and 'timeout server-fin'",
    "ca-base": "write full paths in 'crt' and 'ca-file'",
    "crt-base": "write full paths in 'crt' and 'ca-file'",
    "cpu-map": "the kernel places the processes; 'nbproc N' sets how many",
    "nbthread": "l4lb runs one thread per process; 'nbproc N' runs N processes",
    "log-send-hostname": "syslog lines carry the host name already",
    "log-tag": "syslog lines are tagged l4lb",
    "lua-load": "l4lb runs no Lua; its balancers are Python plugins (docs/balancers.md)",
    "ulimit-n": "l4lb raises its open-file limit to the hard limit; set"
    " LimitNOFILE= in the service unit",
    "ssl-default-bind-ciphers": "set TLS options on each 'bind' (docs/tls.md)",
    "ssl-default-bind-ciphersuites": "set TLS options on each 'bind' (docs/tls.md)",
    "ssl-default-bind-options": "set TLS options on each 'bind' (docs/tls.md)",
    "ssl-default-server-ciphers": "set TLS options on each 'server' (docs/tls.md)",
    "ssl-default-server-ciphersuites": "set TLS options on each 'server' (docs/tls.md)",
    "ssl-default-server-options": "set TLS options on each 'server' (docs/tls.md)",
    "ssl-dh-param-file": "l4lb uses the TLS library's key exchange",
    "node": "not shown anywhere by l4lb",
    "description": "not shown anywhere by l4lb",
    "id": "l4lb numbers proxies and servers in file order",
    "disabled": "remove the section, or 'disable server' at run time",
}

#: Process keywords whose work twistd or the service manager does.
PROCESS: Dict[str, str] = {
    "chroot": "l4lb does not chroot itself; confine it with the service"
    " manager (systemd: RootDirectory=, ProtectSystem=strict)",
    "user": "twistd switches user after binding: start"
    " 'twistd --uid USER --gid GROUP l4lb ...' (etc/l4lb.service does)",
    "uid": "twistd switches user after binding: 'twistd --uid UID l4lb ...'",
    "group": "twistd switches group after binding: 'twistd --gid GROUP l4lb ...'",
    "gid": "twistd switches group after binding: 'twistd --gid GID l4lb ...'",
    "pidfile": "twistd writes the pid file: 'twistd --pidfile PATH l4lb ...'",
}

#: Keywords accepted with a warning: l4lb already does what they ask.
NOTED: Dict[str, str] = {
    "daemon": "twistd decides: it runs in the background unless started"
    " with --nodaemon (-n), as under systemd",
    "master-worker": "l4lb's main process already supervises its workers"
    " ('nbproc') and reloads in place on SIGHUP",
}

#: HAProxy section kinds l4lb does not read, and why.
OTHER_SECTIONS: Dict[str, str] = {
    "resolvers": "'resolvers' sections are not read yet; servers' host names"
    " are resolved once at start",
    "peers": "l4lb does not share stick tables between instances",
    "userlist": "its users authenticate HTTP requests; the stats pages use"
    " 'stats auth USER:PASSWORD' in global",
    "mailers": "follow the log lines 'Server B/S is DOWN' instead",
    "cache": "it caches HTTP responses; l4lb is a Layer 4 balancer",
    "http-errors": "it holds HTTP error pages; l4lb is a Layer 4 balancer",
    "fcgi-app": "it speaks FastCGI; l4lb is a Layer 4 balancer",
    "program": "start other programs with the service manager",
    "ring": "l4lb logs to the global 'log' target",
}


def http_message(keyword: str) -> str:
    """
    The error for a keyword that only makes sense for HTTP.
    """
    return (
        f"'{keyword}' works on HTTP requests, and l4lb is a Layer 4 (TCP and"
        " UDP) balancer that relays bytes without reading HTTP; remove it, or"
        " keep this proxy on HAProxy"
    )


def not_implemented_message(keyword: str) -> Optional[str]:
    """
    The error for a TCP-mode or process keyword l4lb does not implement,
    or C{None} when C{keyword} is not one.
    """
    advice = NOT_IMPLEMENTED.get(keyword) or PROCESS.get(keyword)
    if advice is None:
        return None
    return f"'{keyword}' is not implemented by l4lb: {advice}"


#: C{lb.ini} keys that are l4lb's own: HAProxy 2.6 does not read them, so
#: C{l4lb convert} to C{haproxy.cfg} names each one it writes.
L4LB_ONLY: FrozenSet[str] = frozenset(
    {
        "accept-proxy-from",
        "maxsessions",
        "sni-fallback",
        "sni-max-hello",
        "stats auth",
        "stats bind",
        "log-format",
        "servers-from",
        "timeout udp",
        "tune.relay",
        "udp-requests",
        "udp-responses",
        "udp-check send",
        "udp-check send-binary",
        "udp-check expect",
        "udp-check dns",
    }
)
