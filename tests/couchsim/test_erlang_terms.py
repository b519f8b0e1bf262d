"""couchsim prints a crashed replication's reason as CouchDB does: `io_lib:format("~p", [Reason])`
(couch_replicator_utils:rep_error_to_binary/1 -> couch_util:to_binary/1), the pretty printer breaking at
80 columns. Each expected text below was printed by Erlang/OTP 25.2's io_lib:format("~p", ...) for the
same term (the Erlang notation of each case is in its comment)."""

import pytest

from couch_reconciler.couchsim.replication.erlang import Atom, pretty

AUTH, UNAUTHORIZED = Atom("replication_auth_error"), Atom("session_request_unauthorized")
SESSION = "http://127.0.0.1:5984/_session"


@pytest.mark.parametrize("term,printed", [
    # {replication_auth_error,{session_request_unauthorized,"http://127.0.0.1:5984/_session","bob"}}
    ((AUTH, (UNAUTHORIZED, SESSION, "bob")),
     '{replication_auth_error,\n    {session_request_unauthorized,"http://127.0.0.1:5984/_session","bob"}}'),
    # ... "http://127.0.0.1:41235/_session","a-much-longer-user-name-x"
    ((AUTH, (UNAUTHORIZED, "http://127.0.0.1:41235/_session", "a-much-longer-user-name-x")),
     '{replication_auth_error,\n    {session_request_unauthorized,"http://127.0.0.1:41235/_session",\n'
     '        "a-much-longer-user-name-x"}}'),
    # {replication_auth_error,{session_unexpected_result,500,"http://127.0.0.1:5984/_session","bob"}}
    ((AUTH, (Atom("session_unexpected_result"), 500, SESSION, "bob")),
     '{replication_auth_error,\n    {session_unexpected_result,500,"http://127.0.0.1:5984/_session","bob"}}'),
    # {replication_auth_error,{session_requires_valid_user,"http://127.0.0.1:5984/a/very/long/path/that/goes/on/
    #  and/on/_session","someone-with-a-long-name"}}
    ((AUTH, (Atom("session_requires_valid_user"), "http://127.0.0.1:5984/a/very/long/path/that/goes/on/and/on/_session",
             "someone-with-a-long-name")),
     '{replication_auth_error,\n    {session_requires_valid_user,\n'
     '        "http://127.0.0.1:5984/a/very/long/path/that/goes/on/and/on/_session",\n'
     '        "someone-with-a-long-name"}}'),
    # {http_request_failed,"GET","http://127.0.0.1:5984/db/",{error,{conn_failed,{error,econnrefused}}}}
    ((Atom("http_request_failed"), "GET", "http://127.0.0.1:5984/db/",
      (Atom("error"), (Atom("conn_failed"), (Atom("error"), Atom("econnrefused"))))),
     '{http_request_failed,"GET","http://127.0.0.1:5984/db/",\n'
     '                     {error,{conn_failed,{error,econnrefused}}}}'),
    # {http_request_failed,"POST","http://127.0.0.1:5984/some-very-long-database-name-for-wrapping/_bulk_docs",
    #  'ClientConnectorError'}
    ((Atom("http_request_failed"), "POST", "http://127.0.0.1:5984/some-very-long-database-name-for-wrapping/_bulk_docs",
      Atom("ClientConnectorError")),
     '{http_request_failed,"POST",\n'
     '                     "http://127.0.0.1:5984/some-very-long-database-name-for-wrapping/_bulk_docs",\n'
     "                     'ClientConnectorError'}"),
    # {a,{b,{c,{d,"xxx...(81 x)",e}}}}
    ((Atom("a"), (Atom("b"), (Atom("c"), (Atom("d"), "x" * 81, Atom("e"))))),
     '{a,{b,{c,{d,"' + "x" * 81 + '",\n            e}}}}'),
    # {1,2,{x,"q\"uote\\d\n"},[1,2,3]}: short, on one line; escapes; a list that is no printable string
    ((1, 2, (Atom("x"), 'q"uote\\d\n'), "\x01\x02\x03"), '{1,2,{x,"q\\"uote\\\\d\\n"},[1,2,3]}'),
    # a user name is a list of UTF-8 bytes: [98,195,182] ("bö") prints as a string, [98,197,145] ("bő") does not
    ((AUTH, (UNAUTHORIZED, SESSION, "bö")),
     '{replication_auth_error,\n    {session_request_unauthorized,"http://127.0.0.1:5984/_session","bö"}}'),
    ((AUTH, (UNAUTHORIZED, SESSION, "bő")),
     '{replication_auth_error,\n    {session_request_unauthorized,"http://127.0.0.1:5984/_session",\n'
     '        [98,197,145]}}'),
])
def test_terms_print_as_otp_prints_them(term, printed):
    assert pretty(term) == printed
