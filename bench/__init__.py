"""
Benchmarks of l4lb against a direct connection, HAProxy and nginx's stream
module on one machine.  Run C{python bench/run.py --help}; see
C{bench/README.md}.
"""
