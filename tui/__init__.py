"""`raftsql tui`: a Textual cluster-health screen for raftsql.

It talks to the cluster only through ``raftsql.client`` (like any other client), so it can
watch a remote cluster as well as the local one. ``tui.model`` holds the pure rules,
``tui.source`` the polling, ``tui.app`` the screen.
"""
