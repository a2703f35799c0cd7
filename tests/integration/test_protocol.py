# SPDX-License-Identifier: ISC
"""SMTP protocol on the plain listeners: greeting, EHLO/HELO, command
sequencing, syntax errors, parameters, pipelining, line handling.
(Limits with their own config live in test_limits.py, TLS in test_starttls.py.)"""

import re

import pytest

from harness import (CLIENT_HELO, HOSTNAME, ConnectionClosed, SMTPConn, make_message, msgid_of,
                     submission_conn)

SENDER = "sender@other.test"
LOCAL_RCPT = "user@example.test"


def hello(gw, listener="in"):
    c = SMTPConn.open(gw, listener)
    c.ehlo()
    return c


# ---------------------------------------------------------------- greeting

@pytest.mark.parametrize("listener", ["in", "out", "sub", "subs"])
def test_greeting_names_hostname_and_esmtp(gw, listener):
    c = SMTPConn.open(gw, listener)
    g = c.greeting
    assert g.code == 220
    assert re.match(rf"^{re.escape(HOSTNAME)} ESMTP( |$)", g.lines[0]), str(g)


# ---------------------------------------------------------------- EHLO / HELO

def test_ehlo_inbound_lists_extensions(gw):
    c = SMTPConn.open(gw, "in")
    r = c.cmd(f"EHLO {CLIENT_HELO}").check(250)
    assert r.lines[0].split()[0] == HOSTNAME, str(r)
    kw = r.keywords()
    for k in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"):
        assert k in kw, f"{k} missing from\n{r}"
    assert kw.get("SIZE") == ["10485760"], str(r)
    assert "STARTTLS" not in kw, "tls = none listener offers STARTTLS"
    assert "AUTH" not in kw and not any(k.startswith("AUTH=") for k in kw), str(r)


def test_ehlo_outbound_offers_no_auth(gw):
    r = SMTPConn.open(gw, "out").cmd(f"EHLO {CLIENT_HELO}").check(250)
    kw = r.keywords()
    assert "AUTH" not in kw and "PIPELINING" in kw, str(r)


def test_ehlo_submission_before_tls_offers_starttls_not_auth(gw):
    r = SMTPConn.open(gw, "sub").cmd(f"EHLO {CLIENT_HELO}").check(250)
    kw = r.keywords()
    assert "STARTTLS" in kw and kw["STARTTLS"] == [], str(r)
    assert "AUTH" not in kw, "AUTH offered before TLS with allow_plaintext_auth = no"
    assert "ETRN" not in kw, "RFC 6409 7: ETRN must not be offered on submission"


def test_ehlo_size_follows_listener_override(make_gateway):
    gw = make_gateway({"limits": {"max_message_size": 20000},
                       "listener out": {"max_message_size": 30000}})
    assert hello(gw, "in").cmd(f"EHLO {CLIENT_HELO}").keywords()["SIZE"] == ["20000"]
    assert hello(gw, "out").cmd(f"EHLO {CLIENT_HELO}").keywords()["SIZE"] == ["30000"]


def test_helo_gets_one_line_without_extensions(gw):
    c = SMTPConn.open(gw, "in")
    r = c.cmd(f"HELO {CLIENT_HELO}").check(250)
    assert len(r.lines) == 1, str(r)
    assert r.lines[0].split()[0] == HOSTNAME, str(r)
    assert "PIPELINING" not in r.text and "SIZE" not in r.text, str(r)
    # HELO is enough for a transaction
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")


@pytest.mark.parametrize("verb", ["EHLO", "HELO"])
def test_hello_without_domain_is_a_syntax_error(gw, verb):
    # RFC 5321 4.1.1.1: the domain is required
    r = SMTPConn.open(gw, "in").cmd(verb)
    assert r.code == 501, str(r)


def test_ehlo_accepts_address_literal(gw):
    SMTPConn.open(gw, "in").cmd("EHLO [127.0.0.1]").check(250)


def test_second_ehlo_resets_transaction(gw):
    # RFC 5321 4.1.4: EHLO in a transaction acts like RSET
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    c.cmd(f"EHLO {CLIENT_HELO}").check(250)
    c.cmd(f"RCPT TO:<{LOCAL_RCPT}>").check(503, "5.5.1")


# ---------------------------------------------------------------- simple verbs

def test_noop_rset_quit(gw):
    c = SMTPConn.open(gw, "in")
    c.cmd("NOOP").check(250, "2.0.0")
    c.cmd("RSET").check(250, "2.0.0")
    c.ehlo()
    c.cmd("NOOP").check(250, "2.0.0")
    c.cmd("QUIT").check(221, "2.0.0")
    assert c.wait_closed() == b""


@pytest.mark.parametrize("listener", ["in", "out", "sub"])
def test_vrfy_never_reveals_existence(gw, listener):
    c = submission_conn(gw) if listener == "sub" else hello(gw, listener)
    known = c.cmd("VRFY alice").check(252, "2.5.0")
    unknown = c.cmd("VRFY no-such-user-zz9").check(252, "2.5.0")
    c.cmd("VRFY <alice@example.test>").check(252, "2.5.0")
    assert known.lines[0].replace("alice", "X") == unknown.lines[0].replace("no-such-user-zz9", "X")


def test_expn_does_not_expand(gw):
    r = hello(gw).cmd("EXPN alice")
    assert r.code != 250 and r.code >= 252, str(r)


@pytest.mark.parametrize("line", ["FROB", "FROB x y", "MAILFROM:<a@other.test>", "XYZZY"])
def test_unknown_verb(gw, line):
    c = hello(gw)
    c.cmd(line).check(500, "5.5.1")
    c.cmd("NOOP").check(250, "2.0.0")


def test_verbs_are_case_insensitive(gw):
    c = SMTPConn.open(gw, "in")
    c.cmd(f"ehlo {CLIENT_HELO}").check(250)
    c.cmd(f"mail from:<{SENDER}>").check(250, "2.1.0")
    c.cmd(f"Rcpt To:<{LOCAL_RCPT}>").check(250, "2.1.5")
    c.cmd("rset").check(250, "2.0.0")


# ---------------------------------------------------------------- sequencing

def test_mail_before_hello(gw):
    SMTPConn.open(gw, "in").cmd(f"MAIL FROM:<{SENDER}>").check(503, "5.5.1")


def test_rcpt_before_mail(gw):
    hello(gw).cmd(f"RCPT TO:<{LOCAL_RCPT}>").check(503, "5.5.1")


def test_data_before_mail(gw):
    r = hello(gw).cmd("DATA")
    assert r.code == 503, str(r)


def test_data_without_recipients(gw):
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    r = c.cmd("DATA")
    assert r.code in (503, 554), str(r)
    if r.code == 503:
        r.check(503, "5.5.1")


def test_nested_mail_refused(gw):
    # RFC 5321 4.1.4: MAIL must not be sent inside a transaction
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    c.cmd(f"MAIL FROM:<{SENDER}>").check(503, "5.5.1")


def test_rset_clears_envelope(gw):
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    c.cmd(f"RCPT TO:<{LOCAL_RCPT}>").check(250, "2.1.5")
    c.cmd("RSET").check(250, "2.0.0")
    c.cmd(f"RCPT TO:<{LOCAL_RCPT}>").check(503, "5.5.1")
    assert c.cmd("DATA").code == 503


# ---------------------------------------------------------------- paths and parameters

@pytest.mark.parametrize("arg", ["FROM:sender@other.test", "FROM:<sender@other.test"])
def test_mail_path_without_brackets(gw, arg):
    # a bad path (5.1.7) or a bad command (5.5.2): both are 501
    r = hello(gw).cmd(f"MAIL {arg}")
    assert r.code == 501 and r.enh in ("5.1.7", "5.5.2"), str(r)


@pytest.mark.parametrize("arg", ["TO:user@example.test", "TO:<user@example.test"])
def test_rcpt_path_without_brackets(gw, arg):
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    r = c.cmd(f"RCPT {arg}")
    assert r.code == 501 and r.enh in ("5.1.3", "5.5.2"), str(r)


@pytest.mark.parametrize("arg", [
    "FROM:<a@b@other.test>",           # two @
    "FROM:<a b@other.test>",           # space in local part
    "FROM:<@>",
    "FROM:<sender@>",
    "FROM:<" + "a" * 65 + "@other.test>",  # local part over 64 octets
])
def test_mail_bad_path(gw, arg):
    hello(gw).cmd(f"MAIL {arg}").check(501, "5.1.7")


@pytest.mark.parametrize("arg", [
    "TO:<>",
    "TO:<user@@example.test>",
    "TO:<user@exa mple.test>",
    "TO:<" + "a" * 65 + "@example.test>",
])
def test_rcpt_bad_path(gw, arg):
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    c.cmd(f"RCPT {arg}").check(501, "5.1.3")


def test_null_sender_accepted(gw):
    # RFC 5321 4.5.5 / RFC 6409 3.2
    c = hello(gw)
    c.cmd("MAIL FROM:<>").check(250, "2.1.0")
    c.cmd(f"RCPT TO:<{LOCAL_RCPT}>").check(250, "2.1.5")


def test_space_after_colon_tolerated(gw):
    hello(gw).cmd(f"MAIL FROM: <{SENDER}>").check(250, "2.1.0")


def test_mail_unknown_parameter(gw):
    hello(gw).cmd(f"MAIL FROM:<{SENDER}> FROBNICATE=1").check(555, "5.5.4")


def test_rcpt_unknown_parameter(gw):
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    c.cmd(f"RCPT TO:<{LOCAL_RCPT}> FROBNICATE=1").check(555, "5.5.4")


def test_mail_size_parameter(gw):
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{SENDER}> SIZE=1000").check(250, "2.1.0")
    c.cmd("RSET").check(250)
    c.cmd(f"MAIL FROM:<{SENDER}> SIZE=10485760").check(250, "2.1.0")
    c.cmd("RSET").check(250)
    c.cmd(f"MAIL FROM:<{SENDER}> SIZE=10485761").check(552, "5.3.4")


@pytest.mark.parametrize("params", ["BODY=8BITMIME", "BODY=7BIT", "SMTPUTF8",
                                    "BODY=8BITMIME SMTPUTF8 SIZE=10"])
def test_mail_advertised_parameters_accepted(gw, params):
    hello(gw).cmd(f"MAIL FROM:<{SENDER}> {params}").check(250, "2.1.0")


def test_utf8_address_with_smtputf8(gw):
    c = hello(gw)
    c.cmd("MAIL FROM:<j\u00f6rg@other.test> SMTPUTF8".encode()).check(250, "2.1.0")
    c.cmd("RCPT TO:<j\u00fcrgen@example.test>".encode()).check(250, "2.1.5")


@pytest.mark.parametrize("value", ["<>", "alice@example.test", "alice+2Bx@example.test"])
def test_mail_auth_parameter_accepted_and_grants_nothing(gw, value):
    # RFC 4954 5: accepted from anyone; an unauthenticated client is treated as AUTH=<>
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{SENDER}> AUTH={value}").check(250, "2.1.0")
    c.cmd("RCPT TO:<someone@other.test>").check(550, "5.7.1")


def test_mail_auth_parameter_bad_xtext(gw):
    # spec 10: malformed xtext -> 501 5.5.4
    hello(gw).cmd(f"MAIL FROM:<{SENDER}> AUTH=a+ZZb@example.test").check(501, "5.5.4")


# ---------------------------------------------------------------- transactions

def test_transaction_replies(gw):
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    c.cmd(f"RCPT TO:<{LOCAL_RCPT}>").check(250, "2.1.5")
    c.cmd("DATA").check(354)
    c.send(make_message() + ".\r\n")
    qid = c.read_reply().queued_id()
    assert gw.spool_path(qid).is_file()


def test_pipelined_transaction(gw):
    c = hello(gw)
    c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<u1@example.test>\r\n"
           f"RCPT TO:<nobody@other.test>\r\nRCPT TO:<u2@example.test>\r\nDATA\r\n")
    c.read_reply().check(250, "2.1.0")
    c.read_reply().check(250, "2.1.5")
    c.read_reply().check(550, "5.7.1")
    c.read_reply().check(250, "2.1.5")
    c.read_reply().check(354)
    msg = make_message()
    c.send(msg + ".\r\nNOOP\r\nQUIT\r\n")
    qid = c.read_reply().queued_id()
    c.read_reply().check(250, "2.0.0")
    c.read_reply().check(221, "2.0.0")
    sp = gw.spool_file(qid)
    assert sp.all("rcpt") == ["<u1@example.test>", "<u2@example.test>"], sp.records


def test_several_messages_in_one_session(gw):
    c = hello(gw)
    ids = []
    for _ in range(3):
        ids.append(c.send_message(SENDER, [LOCAL_RCPT], make_message()).queued_id())
    assert len(set(ids)) == 3, ids
    for qid in ids:
        assert gw.spool_path(qid).is_file()


@pytest.mark.parametrize("terminator", ["\n.\n", "\n.\r\n", "\r\n.\n"])
def test_bare_lf_dot_does_not_end_data(gw, terminator):
    """SMTP smuggling: only CRLF.CRLF ends the data; a bare-LF variant must
    not let a second transaction ride in the first one's body."""
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{SENDER}>").check(250, "2.1.0")
    c.cmd(f"RCPT TO:<{LOCAL_RCPT}>").check(250, "2.1.5")
    c.cmd("DATA").check(354)
    c.send("Subject: outer\r\n\r\nfirst" + terminator +
           "MAIL FROM:<smuggler@other.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
           "Subject: smuggled\r\n\r\nsmuggled body\r\n.\r\n")
    first = c.read_reply()
    # Either the whole thing is one message, or it is refused; never two transactions.
    assert first.code in (250, 550, 554, 500, 501, 521), str(first)
    try:
        quit_reply = c.cmd("QUIT")
    except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
        assert first.code != 250, "connection dropped after accepting the message"
        return
    quit_reply.check(221)
    if first.code == 250:
        sp = gw.spool_file(first.queued_id())
        assert b"smuggled body" in sp.message
        assert sp.all("rcpt") == [f"<{LOCAL_RCPT}>"]


# ---------------------------------------------------------------- line handling

def test_command_line_at_rfc_limit_accepted(gw):
    line = "NOOP " + "x" * 505          # 510 octets + CRLF = 512 (RFC 5321 4.5.3.1.4)
    hello(gw).cmd(line).check(250, "2.0.0")


def test_command_line_over_limit(gw):
    c = hello(gw)
    c.cmd("NOOP " + "x" * 600).check(500, "5.5.2")
    # the rest of the long line is not taken as another command
    c.cmd("NOOP").check(250, "2.0.0")


def test_unterminated_long_line_is_not_buffered(gw):
    c = hello(gw)
    c.send(b"x" * 65536)
    c.send(b"\r\nNOOP\r\n")
    c.read_reply().check(500, "5.5.2")
    c.read_reply().check(250, "2.0.0")


def test_empty_line_is_an_error(gw):
    c = hello(gw)
    r = c.cmd("")
    assert r.code == 500, str(r)
    c.cmd("NOOP").check(250, "2.0.0")


def test_nul_in_command_is_an_error(gw):
    c = hello(gw)
    r = c.cmd(b"NOOP a\x00b")
    assert r.code == 500, str(r)
    c.cmd("NOOP").check(250, "2.0.0")


def test_message_line_and_8bit_preserved(gw):
    body = ("caf\u00e9 \u2603\r\n" + "y" * 998 + "\r\n.\r\n..\r\n.leading dot\r\n"
            "trailing space \r\n\r\nlast\r\n")
    msg = make_message(body=body)
    c = hello(gw)
    qid = c.send_message(SENDER, [LOCAL_RCPT], msg, " BODY=8BITMIME").queued_id()
    sp = gw.spool_file(qid)
    assert sp.without_first_header() == msg.encode(), "message not stored byte for byte"
    assert msgid_of(msg).encode() in sp.message


def test_submission_commands_need_tls_first(gw):
    c = SMTPConn.open(gw, "sub")
    c.ehlo()
    c.cmd("NOOP").check(250, "2.0.0")
    c.cmd("RSET").check(250, "2.0.0")
    for line in ("MAIL FROM:<alice@example.test>", "RCPT TO:<x@other.test>", "DATA",
                 "VRFY alice", "AUTH PLAIN AGFsaWNlAHg="):
        c.cmd(line).check(530, "5.7.0")
    c.cmd(f"HELO {CLIENT_HELO}").check(250)
    c.cmd("QUIT").check(221, "2.0.0")


def test_submission_mail_before_auth(gw):
    c = submission_conn(gw)
    c.cmd("MAIL FROM:<alice@example.test>").check(530, "5.7.0")


def test_local_part_of_64_octets_accepted(gw):
    c = hello(gw)
    c.cmd(f"MAIL FROM:<{'s' * 64}@other.test>").check(250, "2.1.0")
    c.cmd(f"RCPT TO:<{'r' * 64}@example.test>").check(250, "2.1.5")
