"""The terminal dashboard: `alyx dev --tui` and `alyx tui --url URL`.

client.py            AdminClient: /api/admin/events, /schema and /stats over HTTP
filters.py           RequestFilter: the request log's filter syntax
app.py               DashboardApp: the Textual application (CSS in dashboard.tcss)
screens/dashboard.py DashboardScreen: requests, realtime, functions, changes, schema
screens/help.py      HelpScreen: the keys
embedded.py          `alyx dev --tui`: the server and the dashboard in one process
"""
