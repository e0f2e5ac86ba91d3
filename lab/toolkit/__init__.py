"""The lab toolkit: one set of helpers for tests/ and bench/ to run the deploy, reach the lab's
hosts, stream requests through the stack and run the failure drills.

    deploy.py   run pyinfra (the deploy or an ops/ file) and read what it changed
    hosts.py    commands, SQL, replication, HAProxy and floating-IP state on the lab's hosts
    streams.py  bounded request and write streams through the floating IP
    drills.py   each failure drill once: its action, its instrument, its verdict

Only deploy.py is safe off the lab (the fast tier runs pyinfra against a copy of the repo);
the rest drive the lab's containers through the docker CLI.
"""
