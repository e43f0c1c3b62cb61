/*
 * The link between a process (process.c) and its file table (files.c):
 * the process owns one table, made at create and emptied at exit.  Not
 * part of any interface beyond src/host/proc/.
 */
#ifndef VTIO_HOST_PROC_FILE_TABLE_H
#define VTIO_HOST_PROC_FILE_TABLE_H

struct vtio_process;
struct vtio_file_table;

/* @returns the table; NULL (-ENOMEM). */
struct vtio_file_table *vtio_file_table_create(void);
/* The program's exit, first half: closes every descriptor and drops every
 * file mapping (release runs for files nothing else holds).  The table
 * stays usable (empty). */
void vtio_file_table_close_all(struct vtio_file_table *t);
void vtio_file_table_destroy(struct vtio_file_table *t);
unsigned vtio_file_table_open_files(struct vtio_file_table *t);

/* The table of p (process.c). */
struct vtio_file_table *vtio_process_file_table(struct vtio_process *p);

#endif
