/*
 * The attack suite's inside: the scene every attack runs in, and the
 * helpers the attacks share.
 *
 * A scene is a fresh machine with the rogue and one DMA engine, booted with
 * a configuration's command line, and two drivers on it:
 *  - "victim" on the DMA engine 00:03.0: a page of secret bytes mapped for
 *    its DMA (victim_iova) and one MSI-X vector with a handler that counts;
 *  - "rogue" on 01:00.0: bus mastering on, nothing mapped yet; each attack
 *    maps what an honest driver of the rogue would, then lets the rogue
 *    loose.  Its card's other functions (01:00.1-7) have no driver.
 * Attacks judge only by what they can observe as the victim would: secret
 * bytes in what the rogue read, bytes changed in memory it should not have
 * reached, interrupts that reached a handler or a CPU.
 */
#ifndef VTIO_ATTACK_PRIV_H
#define VTIO_ATTACK_PRIV_H

#include <vtio/attack.h>
#include <vtio/dma.h>

#include <stdatomic.h>

struct vtio_machine;
struct vtio_host;
struct vtio_rogue;
struct vtio_device;
struct vtio_pci_function;

#define ATTACK_PAGE 4096u
/* Fault recording registers of the scene's unit.  The unit collapses the
 * faults of a requester that already has a pending record, so only more
 * requesters than records can overflow the log: the rogue's card has
 * eight functions, the unit four records. */
#define ATTACK_FAULT_REGS 4

struct attack_scene {
    struct vtio_machine *m;
    struct vtio_host *h;
    unsigned have;                         /* VTIO_PROT_* */
    struct vtio_rogue *rogue;
    struct vtio_device *rogue_dev;
    const struct vtio_pci_function *rogue_fn;
    struct vtio_device *victim_dev;
    const struct vtio_pci_function *victim_fn;
    uint64_t victim_pa;                    /* the victim's secret page */
    vtio_dma_addr_t victim_iova;           /* ... as the victim's DMA reaches it */
    unsigned victim_cpu, victim_vector;    /* its interrupt */
    _Atomic uint64_t victim_irqs;          /* calls of its handler */
    _Atomic unsigned fault_overflows;      /* reported in the host log */
    struct vtio_attack_outcome *out;
};

/* An attack: runs in a booted scene and fills sc->out (result, detail). */
typedef void (*attack_fn)(struct attack_scene *sc);

/* The attacks, by file. */
void attack_read_outside(struct attack_scene *sc);
void attack_write_outside(struct attack_scene *sc);
void attack_write_readonly(struct attack_scene *sc);
void attack_subpage_read(struct attack_scene *sc);
void attack_iova_reuse(struct attack_scene *sc);
void attack_bme_off(struct attack_scene *sc);
void attack_fault_flood(struct attack_scene *sc);
void attack_dma_tables(struct attack_scene *sc);   /* attack_tables.c */
void attack_dma_irt(struct attack_scene *sc);
void attack_spoof_rid(struct attack_scene *sc);    /* attack_peer.c */
void attack_other_function(struct attack_scene *sc);
void attack_forge_compat(struct attack_scene *sc); /* attack_irq.c */
void attack_forge_sid(struct attack_scene *sc);
void attack_forge_vector(struct attack_scene *sc);
void attack_spoof_msi(struct attack_scene *sc);

/* ---- helpers (attack.c) */

/* Sets the result and the detail sentence. */
void attack_report(struct attack_scene *sc, enum vtio_attack_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A page of host memory (from the host's page allocator), filled with the
 * secret pattern of `seed`.  @returns its physical address; 0 if out of
 * memory (the attack reports N/A then). */
uint64_t attack_secret_page(struct attack_scene *sc, uint64_t seed);
/* The secret byte at offset i of a page of `seed`. */
uint8_t attack_secret_byte(uint64_t seed, size_t i);
/* How many bytes of buf[0..len) hold the secret of `seed` at page offset
 * off..off+len (16 matching in a row count as a leak). */
size_t attack_secret_bytes(const uint8_t *buf, size_t len, uint64_t seed, size_t off);
/* Whether the page at pa still holds the secret of `seed`, whole. */
bool attack_secret_intact(struct attack_scene *sc, uint64_t pa, uint64_t seed);
/* Registers of the VT-d unit, as the CPU reads them. */
uint64_t attack_vtd_reg64(struct attack_scene *sc, uint32_t off);
uint32_t attack_vtd_reg32(struct attack_scene *sc, uint32_t off);

/* Seeds of the secrets, so an attack's leak cannot be mistaken for another's. */
#define SECRET_VICTIM 0x5ec7e7
#define SECRET_HOST   0x0ff1ce

#endif
