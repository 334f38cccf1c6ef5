"""
Protection of a frontend: source address rules (ACLs), per-source limits
kept in a bounded stick table, and the frontend-wide session rate limit.

 - L{l4lb.protect.cidr}: sets of address ranges, matched by bisection;
 - L{l4lb.protect.table}: the stick table, pure and driven by C{now};
 - L{l4lb.protect.stage}: the stage that evaluates the C{tcp-request
   connection} rules and applies the per-source limits to each connection;
 - L{l4lb.protect.ratelimit}: C{rate-limit sessions}.
"""
