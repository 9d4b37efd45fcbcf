/*
 * Destination sets from usrloc: a user's contacts as lookup() would relay them, for the
 * calls pushpark_fork() sorts and the branches the engine process adds (pp_tm.c).
 */
#ifndef PP_DSET_H
#define PP_DSET_H

#include "dset.h"
#include "str.h"
#include "modules/usrloc/usrloc.h"

/* mod_init: binds usrloc and its location_table (required). */
int pp_dset_init(void);

/* The usrloc key of an AOR ("sip:user@host", NUL-terminated): user, or user@host with
 * usrloc's use_domain. 0 or -1. */
int pp_ul_aor(const char *aor, str *key);
/* The AOR's record with its domain slot locked (release with pp_ul_release), or NULL
 * (unlocked) when the AOR has none. */
struct urecord *pp_ul_get(str *key);
void pp_ul_release(struct urecord *rec, str *key);

/* A usrloc contact as lookup() makes it a destination: Path first, else the address it
 * registered from; its socket, q and branch flags. 0 or -1. */
int pp_contact_branch(ucontact_t *c, struct msg_branch *b);
/* The +sip.instance the record keeps for this contact URI ("" when none); 1 when the
 * record (may be NULL) has that contact at all. */
int pp_contact_instance(struct urecord *rec, str *uri, str *instance);

/* The record's live contact of this device (its key: a normalised +sip.instance), or
 * NULL. */
ucontact_t *pp_device_contact(struct urecord *rec, const char *device);

/* Puts a destination in msg's destination set: the Request-URI for the first, a branch
 * for the others. 0 or -1. */
int pp_dset_put(struct sip_msg *msg, struct msg_branch *b, int first);

/* 1 when OpenSIPS holds a live TCP/TLS connection to where the destination points (its
 * dst_uri, else its URI): the app is awake. UDP has no connection: 0. */
int pp_live_connection(struct msg_branch *b);

#endif
