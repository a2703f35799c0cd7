/* SPDX-License-Identifier: ISC */
/*
 * ldap_config.h - the [ldap NAME] sections: one directory each, parsed with
 * its table (settings.h), with the defaults of the directory's type and the
 * rules between keys.
 *
 * config_load() runs the check through ldap_config_module, so the daemon
 * refuses a bad section at start and check-config reports it with the rest
 * of the file; nothing here opens a file (check-config opens the CA and
 * password files as the auth process's user, the source reads the password
 * when it starts).
 *
 * Like struct config, the record is public: a plain, read-only description
 * of one directory that the connection pool and the source both read.
 * Every key is documented in README.md under "[ldap NAME]".
 */
#ifndef AUTHRELAY_LDAP_CONFIG_H
#define AUTHRELAY_LDAP_CONFIG_H

#include <stddef.h>
#include "../lib/common.h"
#include "../lib/config.h"

struct settings_ctx;

enum ldap_scope_cfg { LDAP_CFG_SCOPE_BASE, LDAP_CFG_SCOPE_ONE, LDAP_CFG_SCOPE_SUB };
enum ldap_method { LDAP_METHOD_BIND, LDAP_METHOD_FETCH };
enum ldap_dir_type {
	LDAP_TYPE_GENERIC,
	LDAP_TYPE_OPENLDAP,
	LDAP_TYPE_AD,     /* Active Directory */
	LDAP_TYPE_GC,     /* Active Directory Global Catalog */
	LDAP_TYPE_DOMINO, /* HCL/IBM Domino */
};

/* What the other directories do while this one cannot answer (the
 * uniqueness rule: a user found in two directories is refused). */
enum ldap_when_unavailable {
	LDAP_WHEN_UNAVAILABLE_TEMPFAIL,     /* 454: the rule cannot be checked */
	LDAP_WHEN_UNAVAILABLE_TRUST_OTHERS, /* weaker: an entry found elsewhere decides */
};

struct ldap_dir_cfg {
	char *name;  /* NAME of [ldap NAME] */
	int line;    /* the section header, for messages */
	char **uris; /* tried in order for failover */
	size_t n_uris;
	bool starttls;
	char *ca_file; /* NULL: the system's CAs (libldap's default) */
	bool tls_verify;
	char *tls_name;           /* the name the certificate must carry; NULL: the URI's host */
	char *bind_dn;            /* NULL: no service account; AD: may be a UPN or DOMAIN\user */
	char *bind_password_file; /* set iff bind_dn is */
	char *base; /* "" (the root: a Global Catalog's whole forest) only with type = gc */
	enum ldap_scope_cfg scope;
	char *filter; /* tokens %s %u %d */
	char **mail_attributes;
	size_t n_mail_attributes;
	enum ldap_method method;
	char *password_attribute;
	char *group_dn;     /* NULL: no group gate */
	char *group_filter; /* tokens %s %u %d %D; evaluated on group_dn; set iff it is */
	char *dn_template;  /* NULL: search for the user */
	bool upn_bind;      /* dn_template is an AD bind name: "%u@domain" or "DOMAIN\\%u" */
	enum ldap_dir_type type;
	char *netbios_domain; /* AD/GC: CORP of CORP\ann logins; NULL: read from the directory */
	unsigned network_timeout; /* s */
	unsigned timeout;         /* s, per operation */
	unsigned pool_size;
	enum ldap_when_unavailable when_unavailable;
};

/* [ldap NAME] with its check, for config_set_modules(). */
extern const struct config_module ldap_config_module;

/* Parse every [ldap NAME] section of cfg into an array (*n_r entries; NULL
 * with *n_r = 0 when there is none). Problems, and warnings (a password
 * sent without TLS), go to ctx; the array is filled even then, and the
 * caller frees it. */
struct ldap_dir_cfg *ldap_config_parse(const struct config *cfg, size_t *n_r,
                                       struct settings_ctx *ctx);
/* The same on its own: the array, or NULL with *n_r = 0 and, when a section
 * is wrong, every problem as "file:line: message\n" in *errors_r (malloc'd,
 * the caller frees; NULL when there is no section). Warnings are dropped:
 * config_load() gave them already. */
struct ldap_dir_cfg *ldap_config_load(const struct config *cfg, size_t *n_r, char **errors_r);
void ldap_config_free(struct ldap_dir_cfg *dirs, size_t n);

/* Read the service account's password: the first line of the file (the
 * newline dropped). Returns a malloc'd string (free_secret() it) or NULL
 * with *error_r (a static buffer, valid until the next call). */
char *ldap_config_read_password(const struct ldap_dir_cfg *dir, const char **error_r);

const char *ldap_config_type_name(enum ldap_dir_type);
const char *ldap_config_scope_name(enum ldap_scope_cfg);

#endif
