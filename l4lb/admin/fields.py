"""
The columns of HAProxy's C{show stat} CSV, in its order: tools read them by
position, so the order is kept and columns l4lb does not fill stay empty.
"""

from __future__ import annotations

from typing import Tuple

_NAMES = """
pxname svname qcur qmax scur smax slim stot bin bout dreq dresp ereq econ
eresp wretr wredis status weight act bck chkfail chkdown lastchg downtime
qlimit pid iid sid throttle lbtot tracked type rate rate_lim rate_max
check_status check_code check_duration hrsp_1xx hrsp_2xx hrsp_3xx hrsp_4xx
hrsp_5xx hrsp_other hanafail req_rate req_rate_max req_tot cli_abrt srv_abrt
comp_in comp_out comp_byp comp_rsp lastsess last_chk last_agt qtime ctime
rtime ttime agent_status agent_code agent_duration check_desc agent_desc
check_rise check_fall check_health agent_rise agent_fall agent_health addr
cookie mode algo conn_rate conn_rate_max conn_tot intercepted dcon dses wrew
connect reuse cache_lookups cache_hits srv_icur src_ilim qtime_max ctime_max
rtime_max ttime_max eint idle_conn_cur safe_conn_cur used_conn_cur
need_conn_est uweight agg_server_status agg_server_status_check
agg_check_status srid sess_other h1_sess h2_sess h3_sess req_other h1req
h2req h3req proto priv_idle_cur reqbin reqbout resbin resbout
cache_hint_hits
"""

#: Every column, in order (119 of them).
FIELDS: Tuple[str, ...] = tuple(_NAMES.split())

#: The C{type} column's values.
TYPE_FRONTEND = 0
TYPE_BACKEND = 1
TYPE_SERVER = 2
