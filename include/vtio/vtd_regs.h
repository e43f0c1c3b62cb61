/*
 * vtd_regs: Intel VT-d register and in-memory formats, bit for bit.
 *
 * Shared by the remapping unit (src/hw/vtd), the host driver that programs
 * it, and `vtio dump`.  Names follow the VT-d specification (rev. 4.x) so a
 * reader with the spec open finds them; the layouts are those Linux's
 * intel-iommu driver and QEMU use.  All in-memory structures are
 * little-endian 64-bit words; bit numbers below are inclusive.
 *
 * Field macros come in pairs: VTD_X_SHIFT/VTD_X_MASK, or a single-bit VTD_X,
 * plus a VTD_X_GET(v) where a field is read often.
 */
#ifndef VTIO_VTD_REGS_H
#define VTIO_VTD_REGS_H

#include <stdint.h>

#define VTD_BIT(n)            (1ull << (n))
#define VTD_FIELD(v, hi, lo)  (((v) >> (lo)) & ((2ull << ((hi) - (lo))) - 1))
#define VTD_MAKE(x, hi, lo)   (((uint64_t)(x) & ((2ull << ((hi) - (lo))) - 1)) << (lo))

/* ------------------------------------------------------------------------
 * Register offsets (section 11.4)
 */
#define VTD_VER_REG        0x000   /* 32 RO: [7:4] major, [3:0] minor */
#define VTD_CAP_REG        0x008   /* 64 RO */
#define VTD_ECAP_REG       0x010   /* 64 RO */
#define VTD_GCMD_REG       0x018   /* 32 WO */
#define VTD_GSTS_REG       0x01c   /* 32 RO */
#define VTD_RTADDR_REG     0x020   /* 64 */
#define VTD_CCMD_REG       0x028   /* 64 */
#define VTD_FSTS_REG       0x034   /* 32 */
#define VTD_FECTL_REG      0x038   /* 32 */
#define VTD_FEDATA_REG     0x03c   /* 32 */
#define VTD_FEADDR_REG     0x040   /* 32 */
#define VTD_FEUADDR_REG    0x044   /* 32 */
#define VTD_AFLOG_REG      0x058   /* 64 */
#define VTD_PMEN_REG       0x064   /* 32 */
#define VTD_PLMBASE_REG    0x068   /* 32 */
#define VTD_PLMLIMIT_REG   0x06c   /* 32 */
#define VTD_PHMBASE_REG    0x070   /* 64 */
#define VTD_PHMLIMIT_REG   0x078   /* 64 */
#define VTD_IQH_REG        0x080   /* 64 RO */
#define VTD_IQT_REG        0x088   /* 64 */
#define VTD_IQA_REG        0x090   /* 64 */
#define VTD_ICS_REG        0x09c   /* 32 */
#define VTD_IECTL_REG      0x0a0   /* 32 */
#define VTD_IEDATA_REG     0x0a4   /* 32 */
#define VTD_IEADDR_REG     0x0a8   /* 32 */
#define VTD_IEUADDR_REG    0x0ac   /* 32 */
#define VTD_IQER_REG       0x0b0   /* 64 */
#define VTD_IRTA_REG       0x0b8   /* 64 */
#define VTD_PQH_REG        0x0c0
#define VTD_PQT_REG        0x0c8
#define VTD_PQA_REG        0x0d0
#define VTD_PRS_REG        0x0dc
#define VTD_PECTL_REG      0x0e0
#define VTD_PEDATA_REG     0x0e4
#define VTD_PEADDR_REG     0x0e8
#define VTD_PEUADDR_REG    0x0ec
/* IOTLB registers at ECAP.IRO * 16: IVA (+0), IOTLB (+8). */
#define VTD_IVA_OFF        0x0
#define VTD_IOTLB_OFF      0x8
/* Fault recording registers at CAP.FRO * 16, 16 bytes each. */
#define VTD_FRCD_SIZE      16

/* vtio's layout: IOTLB registers at 0x100, FRCDs from 0x200; 4 KiB window. */
#define VTD_REG_SIZE       0x1000
#define VTD_IRO_DEFAULT    (0x100 / 16)
#define VTD_FRO_DEFAULT    (0x200 / 16)

/* ---- VER */
#define VTD_VER_VALUE      0x10            /* 1.0, as QEMU and most parts report */

/* ---- CAP (section 11.4.2) */
#define VTD_CAP_ND(v)       VTD_FIELD(v, 2, 0)   /* 2^(4+2*ND) domain ids */
#define VTD_CAP_AFL         VTD_BIT(3)
#define VTD_CAP_RWBF        VTD_BIT(4)
#define VTD_CAP_PLMR        VTD_BIT(5)
#define VTD_CAP_PHMR        VTD_BIT(6)
#define VTD_CAP_CM          VTD_BIT(7)
#define VTD_CAP_SAGAW(v)    VTD_FIELD(v, 12, 8)  /* bit1 39-bit, bit2 48, bit3 57 */
#define VTD_CAP_SAGAW_SHIFT 8
#define VTD_CAP_MGAW(v)     VTD_FIELD(v, 21, 16) /* max guest address width - 1 */
#define VTD_CAP_MGAW_SHIFT  16
#define VTD_CAP_ZLR         VTD_BIT(22)
#define VTD_CAP_FRO(v)      VTD_FIELD(v, 33, 24)
#define VTD_CAP_FRO_SHIFT   24
#define VTD_CAP_SSLPS(v)    VTD_FIELD(v, 37, 34) /* bit0 2 MiB, bit1 1 GiB */
#define VTD_CAP_SSLPS_SHIFT 34
#define VTD_CAP_PSI         VTD_BIT(39)
#define VTD_CAP_NFR(v)      VTD_FIELD(v, 47, 40) /* number of FRCDs - 1 */
#define VTD_CAP_NFR_SHIFT   40
#define VTD_CAP_MAMV(v)     VTD_FIELD(v, 53, 48)
#define VTD_CAP_MAMV_SHIFT  48
#define VTD_CAP_DWD         VTD_BIT(54)
#define VTD_CAP_DRD         VTD_BIT(55)
#define VTD_CAP_FS1GP       VTD_BIT(56)
#define VTD_CAP_PI          VTD_BIT(59)
#define VTD_CAP_FS5LP       VTD_BIT(60)
#define VTD_CAP_ECMDS       VTD_BIT(61)
#define VTD_CAP_ESIRTPS     VTD_BIT(62)
#define VTD_CAP_ESRTPS      VTD_BIT(63)

/* ---- ECAP (section 11.4.3) */
#define VTD_ECAP_C          VTD_BIT(0)
#define VTD_ECAP_QI         VTD_BIT(1)
#define VTD_ECAP_DT         VTD_BIT(2)
#define VTD_ECAP_IR         VTD_BIT(3)
#define VTD_ECAP_EIM        VTD_BIT(4)
#define VTD_ECAP_PT         VTD_BIT(6)
#define VTD_ECAP_SC         VTD_BIT(7)
#define VTD_ECAP_IRO(v)     VTD_FIELD(v, 17, 8)
#define VTD_ECAP_IRO_SHIFT  8
#define VTD_ECAP_MHMV(v)    VTD_FIELD(v, 23, 20)
#define VTD_ECAP_MHMV_SHIFT 20
#define VTD_ECAP_NEST       VTD_BIT(26)
#define VTD_ECAP_PRS        VTD_BIT(29)
#define VTD_ECAP_ERS        VTD_BIT(30)
#define VTD_ECAP_SRS        VTD_BIT(31)
#define VTD_ECAP_NWFS       VTD_BIT(33)
#define VTD_ECAP_PSS(v)     VTD_FIELD(v, 39, 35) /* PASID bits - 1 */
#define VTD_ECAP_PSS_SHIFT  35
#define VTD_ECAP_PASID      VTD_BIT(40)
#define VTD_ECAP_SMTS       VTD_BIT(43)
#define VTD_ECAP_SSTS       VTD_BIT(46)
#define VTD_ECAP_FSTS       VTD_BIT(47)

/* ---- GCMD / GSTS (same bit positions) */
#define VTD_GCMD_TE         VTD_BIT(31)
#define VTD_GCMD_SRTP       VTD_BIT(30)
#define VTD_GCMD_SFL        VTD_BIT(29)
#define VTD_GCMD_EAFL       VTD_BIT(28)
#define VTD_GCMD_WBF        VTD_BIT(27)
#define VTD_GCMD_QIE        VTD_BIT(26)
#define VTD_GCMD_IRE        VTD_BIT(25)
#define VTD_GCMD_SIRTP      VTD_BIT(24)
#define VTD_GCMD_CFI        VTD_BIT(23)
#define VTD_GSTS_TES        VTD_GCMD_TE
#define VTD_GSTS_RTPS       VTD_GCMD_SRTP
#define VTD_GSTS_FLS        VTD_GCMD_SFL
#define VTD_GSTS_AFLS       VTD_GCMD_EAFL
#define VTD_GSTS_WBFS       VTD_GCMD_WBF
#define VTD_GSTS_QIES       VTD_GCMD_QIE
#define VTD_GSTS_IRES       VTD_GCMD_IRE
#define VTD_GSTS_IRTPS      VTD_GCMD_SIRTP
#define VTD_GSTS_CFIS       VTD_GCMD_CFI
/* One-shot commands: act whenever written as 1.  The rest are levels. */
#define VTD_GCMD_ONE_SHOT   (VTD_GCMD_SRTP | VTD_GCMD_SFL | VTD_GCMD_WBF | VTD_GCMD_SIRTP)

/* ---- RTADDR */
#define VTD_RTADDR_ADDR_MASK 0xfffffffffffff000ull
#define VTD_RTADDR_TTM(v)    VTD_FIELD(v, 11, 10)
#define VTD_RTADDR_SMT       VTD_BIT(10)          /* TTM = 01: scalable mode */

/* ---- CCMD */
#define VTD_CCMD_ICC         VTD_BIT(63)
#define VTD_CCMD_CIRG(v)     VTD_FIELD(v, 62, 61)
#define VTD_CCMD_CIRG_SHIFT  61
#define VTD_CCMD_CAIG_SHIFT  59
#define VTD_CCMD_CAIG(v)     VTD_FIELD(v, 60, 59)
#define VTD_CCMD_FM(v)       VTD_FIELD(v, 33, 32)
#define VTD_CCMD_SID(v)      VTD_FIELD(v, 31, 16)
#define VTD_CCMD_DID(v)      VTD_FIELD(v, 15, 0)
#define VTD_INV_GLOBAL       1     /* granularities shared by CCMD, IOTLB, descriptors */
#define VTD_INV_DOMAIN       2
#define VTD_INV_DEVICE       3     /* CCMD / context-cache descriptor */
#define VTD_INV_PAGE         3     /* IOTLB / IOTLB descriptor */

/* ---- IOTLB register and IVA */
#define VTD_IOTLB_IVT        VTD_BIT(63)
#define VTD_IOTLB_IIRG(v)    VTD_FIELD(v, 61, 60)
#define VTD_IOTLB_IIRG_SHIFT 60
#define VTD_IOTLB_IAIG_SHIFT 57
#define VTD_IOTLB_IAIG(v)    VTD_FIELD(v, 58, 57)
#define VTD_IOTLB_DR         VTD_BIT(49)
#define VTD_IOTLB_DW         VTD_BIT(48)
#define VTD_IOTLB_DID(v)     VTD_FIELD(v, 47, 32)
#define VTD_IVA_ADDR(v)      ((v) & 0xfffffffffffff000ull)
#define VTD_IVA_IH           VTD_BIT(6)
#define VTD_IVA_AM(v)        VTD_FIELD(v, 5, 0)

/* ---- FSTS */
#define VTD_FSTS_PFO         VTD_BIT(0)   /* RW1C */
#define VTD_FSTS_PPF         VTD_BIT(1)   /* RO */
#define VTD_FSTS_AFO         VTD_BIT(2)
#define VTD_FSTS_APF         VTD_BIT(3)
#define VTD_FSTS_IQE         VTD_BIT(4)   /* RW1C */
#define VTD_FSTS_ICE         VTD_BIT(5)   /* RW1C */
#define VTD_FSTS_ITE         VTD_BIT(6)   /* RW1C */
#define VTD_FSTS_PRO         VTD_BIT(7)
#define VTD_FSTS_FRI(v)      VTD_FIELD(v, 15, 8)
#define VTD_FSTS_FRI_SHIFT   8
#define VTD_FSTS_RW1C        (VTD_FSTS_PFO | VTD_FSTS_AFO | VTD_FSTS_APF | VTD_FSTS_IQE | \
                              VTD_FSTS_ICE | VTD_FSTS_ITE | VTD_FSTS_PRO)

/* ---- FECTL / IECTL / PECTL */
#define VTD_xECTL_IM         VTD_BIT(31)  /* interrupt mask (reset 1) */
#define VTD_xECTL_IP         VTD_BIT(30)  /* interrupt pending (RO) */

/* ---- PMEN */
#define VTD_PMEN_EPM         VTD_BIT(31)
#define VTD_PMEN_PRS         VTD_BIT(0)

/* ---- IQH / IQT / IQA / ICS / IQER */
#define VTD_IQ_OFF_SHIFT     4             /* IQH/IQT: byte offset, 16-byte units */
#define VTD_IQ_OFF_MASK      0x7fff0ull    /* bits 18:4 */
#define VTD_IQA_ADDR_MASK    0xfffffffffffff000ull
#define VTD_IQA_DW           VTD_BIT(11)   /* 256-bit descriptors */
#define VTD_IQA_QS(v)        VTD_FIELD(v, 2, 0)
#define VTD_ICS_IWC          VTD_BIT(0)
#define VTD_IQER_IQEI(v)     VTD_FIELD(v, 3, 0)
#define VTD_IQER_IQEI_MASK   0xfull
#define VTD_IQER_ITESID(v)   VTD_FIELD(v, 47, 32)  /* source of an ITE */
#define VTD_IQER_ITESID_SHIFT 32
#define VTD_IQER_ICESID(v)   VTD_FIELD(v, 63, 48)  /* source of an ICE */
#define VTD_IQEI_NONE        0
#define VTD_IQEI_RSVD        1   /* reserved field set / bad descriptor */
#define VTD_IQEI_DW_MISMATCH 4   /* 256-bit type in a 128-bit queue, or tail misaligned */
#define VTD_IQEI_BAD_TAIL    5   /* tail beyond the queue / misaligned */
#define VTD_IQEI_INV_TYPE    6   /* unknown descriptor type */

/* ---- IRTA */
#define VTD_IRTA_ADDR_MASK   0xfffffffffffff000ull
#define VTD_IRTA_EIME        VTD_BIT(11)
#define VTD_IRTA_S(v)        VTD_FIELD(v, 3, 0)   /* 2^(S+1) entries */

/* ---- FRCD (128 bits: lo at +0, hi at +8) */
#define VTD_FRCD_LO_FI_MASK  0xfffffffffffff000ull
#define VTD_FRCD_LO_IIDX_SHIFT 48                  /* IR faults: interrupt index */
#define VTD_FRCD_HI_SID(v)   VTD_FIELD(v, 15, 0)
#define VTD_FRCD_HI_T2       VTD_BIT(28)           /* type bit 2 (0 for DMA, IR) */
#define VTD_FRCD_HI_PRIV     VTD_BIT(29)           /* privileged request (with PP) */
#define VTD_FRCD_HI_EXE      VTD_BIT(30)           /* execute requested (with PP) */
#define VTD_FRCD_HI_PP       VTD_BIT(31)
#define VTD_FRCD_HI_FR(v)    VTD_FIELD(v, 39, 32)
#define VTD_FRCD_HI_FR_SHIFT 32
#define VTD_FRCD_HI_PV(v)    VTD_FIELD(v, 59, 40)
#define VTD_FRCD_HI_PV_SHIFT 40
#define VTD_FRCD_HI_AT_SHIFT 60
#define VTD_FRCD_HI_T        VTD_BIT(62)           /* 1 read, 0 write */
#define VTD_FRCD_HI_F        VTD_BIT(63)           /* RW1C */

/* ---- fault reasons (section 7.1.3; those QEMU and Linux use) */
enum vtd_fault_reason {
    VTD_FR_NONE = 0x00,
    VTD_FR_ROOT_ENTRY_P = 0x01,
    VTD_FR_CONTEXT_ENTRY_P = 0x02,
    VTD_FR_CONTEXT_ENTRY_INV = 0x03,
    VTD_FR_ADDR_BEYOND_MGAW = 0x04,
    VTD_FR_WRITE = 0x05,
    VTD_FR_READ = 0x06,
    VTD_FR_PAGING_ENTRY_INV = 0x07,
    VTD_FR_ROOT_TABLE_INV = 0x08,
    VTD_FR_CONTEXT_TABLE_INV = 0x09,
    VTD_FR_ROOT_ENTRY_RSVD = 0x0a,
    VTD_FR_CONTEXT_ENTRY_RSVD = 0x0b,
    VTD_FR_PAGING_ENTRY_RSVD = 0x0c,
    VTD_FR_CONTEXT_ENTRY_TT = 0x0d,
    VTD_FR_INTERRUPT_ADDR = 0x0e,
    VTD_FR_IR_REQ_RSVD = 0x20,
    VTD_FR_IR_INDEX_OVER = 0x21,
    VTD_FR_IR_ENTRY_P = 0x22,
    VTD_FR_IR_ROOT_INVAL = 0x23,
    VTD_FR_IR_IRTE_RSVD = 0x24,
    VTD_FR_IR_REQ_COMPAT = 0x25,
    VTD_FR_IR_SID_ERR = 0x26,
    VTD_FR_RTADDR_INV_TTM = 0x31,
    VTD_FR_SM_PRE_ABS = 0x47,
    VTD_FR_PASID_DIR_ACCESS_ERR = 0x50,
    VTD_FR_PASID_DIR_ENTRY_P = 0x51,
    VTD_FR_PASID_TABLE_ACCESS_ERR = 0x58,
    VTD_FR_PASID_ENTRY_P = 0x59,
    VTD_FR_PASID_TABLE_ENTRY_INV = 0x5b,
    VTD_FR_FS_PAGING_ENTRY_INV = 0x70,
    VTD_FR_FS_PAGING_ENTRY_P = 0x71,
    VTD_FR_FS_PAGING_ENTRY_RSVD = 0x72,
    VTD_FR_PASID_ENTRY_FSPTPTR_INV = 0x73,
    VTD_FR_FS_NON_CANONICAL = 0x80,
    VTD_FR_FS_PAGING_ENTRY_US = 0x81,
    VTD_FR_SM_WRITE = 0x85,
    VTD_FR_SM_INTERRUPT_ADDR = 0x87,
    VTD_FR_FS_BIT_UPDATE_FAILED = 0x91,
};

/* ------------------------------------------------------------------------
 * In-memory structures
 */

/* ---- root entry, legacy (16 B, indexed by bus) */
#define VTD_ROOT_P           VTD_BIT(0)          /* lo */
#define VTD_ROOT_CTP_MASK    0xfffffffffffff000ull
#define VTD_ROOT_LO_RSVD     0xffeull            /* bits 11:1 (plus bits above HAW) */
/* scalable (lo: lower table devfn 0-127, hi: upper table devfn 128-255) */
#define VTD_ROOT_LP          VTD_BIT(0)
#define VTD_ROOT_UP          VTD_BIT(0)

/* ---- legacy context entry (16 B, indexed by devfn) */
#define VTD_CTX_P            VTD_BIT(0)          /* lo */
#define VTD_CTX_FPD          VTD_BIT(1)
#define VTD_CTX_TT(lo)       VTD_FIELD(lo, 3, 2)
#define VTD_CTX_TT_SHIFT     2
#define VTD_CTX_TT_MULTI_LEVEL 0                 /* SL tables, untranslated only */
#define VTD_CTX_TT_DEV_IOTLB   1                 /* SL tables, ATS allowed */
#define VTD_CTX_TT_PASS_THROUGH 2
#define VTD_CTX_LO_RSVD      0xff0ull            /* bits 11:4 */
#define VTD_CTX_SLPTPTR_MASK 0xfffffffffffff000ull
#define VTD_CTX_AW(hi)       VTD_FIELD(hi, 2, 0)  /* hi */
#define VTD_CTX_DID(hi)      VTD_FIELD(hi, 23, 8)
#define VTD_CTX_DID_SHIFT    8
#define VTD_CTX_HI_RSVD      0xffffffffff000080ull

/* ---- scalable-mode context entry (32 B; 128 per 4 KiB table) */
#define VTD_SM_CTX_P         VTD_BIT(0)          /* qw0 */
#define VTD_SM_CTX_FPD       VTD_BIT(1)
#define VTD_SM_CTX_DTE       VTD_BIT(2)
#define VTD_SM_CTX_PASIDE    VTD_BIT(3)
#define VTD_SM_CTX_PRE       VTD_BIT(4)
#define VTD_SM_CTX_Q0_RSVD   0x1e0ull            /* bits 8:5 */
#define VTD_SM_CTX_PDTS(q0)  VTD_FIELD(q0, 11, 9) /* 2^(PDTS+7) directory entries */
#define VTD_SM_CTX_PDTS_SHIFT 9
#define VTD_SM_CTX_PDIR_MASK 0xfffffffffffff000ull
#define VTD_SM_CTX_RID_PASID(q1) VTD_FIELD(q1, 19, 0)
#define VTD_SM_CTX_Q1_RSVD   0xffffffffffe00000ull

/* ---- PASID directory entry (8 B, index PASID[19:6]) */
#define VTD_PDIRE_P          VTD_BIT(0)
#define VTD_PDIRE_FPD        VTD_BIT(1)
#define VTD_PDIRE_PTBL_MASK  0xfffffffffffff000ull

/* ---- PASID table entry (64 B, index PASID[5:0]) */
#define VTD_PTE_P            VTD_BIT(0)          /* qw0 */
#define VTD_PTE_FPD          VTD_BIT(1)
#define VTD_PTE_AW(q0)       VTD_FIELD(q0, 4, 2)
#define VTD_PTE_AW_SHIFT     2
#define VTD_PTE_PGTT(q0)     VTD_FIELD(q0, 8, 6)
#define VTD_PTE_PGTT_SHIFT   6
#define VTD_PGTT_FL          1
#define VTD_PGTT_SL          2
#define VTD_PGTT_NESTED      3
#define VTD_PGTT_PT          4
#define VTD_PTE_SSADE        VTD_BIT(9)
#define VTD_PTE_SSPTPTR_MASK 0xfffffffffffff000ull
#define VTD_PTE_DID(q1)      VTD_FIELD(q1, 15, 0)
#define VTD_PTE_PWSNP        VTD_BIT(23)         /* qw1 */
#define VTD_PTE_PGSNP        VTD_BIT(24)
#define VTD_PTE_SRE          VTD_BIT(0)          /* qw2 */
#define VTD_PTE_FSPM(q2)     VTD_FIELD(q2, 3, 2) /* 0 4-level, 1 5-level */
#define VTD_PTE_FSPM_SHIFT   2
#define VTD_PTE_WPE          VTD_BIT(4)
#define VTD_PTE_EAFE         VTD_BIT(7)
#define VTD_PTE_FSPTPTR_MASK 0xfffffffffffff000ull

/* ---- second-stage paging entry */
#define VTD_SL_R             VTD_BIT(0)
#define VTD_SL_W             VTD_BIT(1)
#define VTD_SL_X             VTD_BIT(2)
#define VTD_SL_PS            VTD_BIT(7)
#define VTD_SL_A             VTD_BIT(8)
#define VTD_SL_D             VTD_BIT(9)
#define VTD_SL_SNP           VTD_BIT(11)
#define VTD_SL_ADDR_MASK(haw) (((1ull << (haw)) - 1) & ~0xfffull)

/* ---- first-stage paging entry (x86-64 format) */
#define VTD_FL_P             VTD_BIT(0)
#define VTD_FL_RW            VTD_BIT(1)
#define VTD_FL_US            VTD_BIT(2)
#define VTD_FL_PWT           VTD_BIT(3)
#define VTD_FL_PCD           VTD_BIT(4)
#define VTD_FL_A             VTD_BIT(5)
#define VTD_FL_D             VTD_BIT(6)
#define VTD_FL_PS            VTD_BIT(7)
#define VTD_FL_G             VTD_BIT(8)
#define VTD_FL_XD            VTD_BIT(63)

/* Address widths and levels: AW 1/2/3 = 39/48/57 bits = 3/4/5 levels. */
#define VTD_AW_TO_LEVELS(aw) ((aw) + 2)
#define VTD_AW_TO_WIDTH(aw)  (30 + 9 * (aw))
#define VTD_LEVEL_SHIFT(l)   (12 + 9 * ((l) - 1))  /* level 1 = 4 KiB */

/* ---- invalidation descriptors (128-bit: qw0, qw1; 256-bit: + qw2, qw3) */
#define VTD_INV_TYPE(q0)     (VTD_FIELD(q0, 3, 0) | VTD_FIELD(q0, 11, 9) << 4)
#define VTD_INV_DESC_CC      0x1
#define VTD_INV_DESC_IOTLB   0x2
#define VTD_INV_DESC_DEVTLB  0x3
#define VTD_INV_DESC_IEC     0x4
#define VTD_INV_DESC_WAIT    0x5
#define VTD_INV_DESC_PIOTLB  0x6
#define VTD_INV_DESC_PC      0x7
#define VTD_INV_DESC_PDEVTLB 0x8
#define VTD_INV_DESC_PGRP    0x9
#define VTD_INV_G(q0)        VTD_FIELD(q0, 5, 4)
#define VTD_INV_G_SHIFT      4
#define VTD_INV_DID(q0)      VTD_FIELD(q0, 31, 16)
#define VTD_INV_DID_SHIFT    16
/* context-cache */
#define VTD_INV_CC_SID(q0)   VTD_FIELD(q0, 47, 32)
#define VTD_INV_CC_FM(q0)    VTD_FIELD(q0, 49, 48)
/* IOTLB */
#define VTD_INV_IOTLB_DW     VTD_BIT(6)
#define VTD_INV_IOTLB_DR     VTD_BIT(7)
#define VTD_INV_ADDR(q1)     ((q1) & 0xfffffffffffff000ull)
#define VTD_INV_IH           VTD_BIT(6)          /* qw1 */
#define VTD_INV_AM(q1)       VTD_FIELD(q1, 5, 0)
/* device-TLB */
#define VTD_INV_DEV_SID(q0)  VTD_FIELD(q0, 47, 32)
#define VTD_INV_DEV_S        VTD_BIT(0)          /* qw1: size bit */
#define VTD_INV_DEV_PFSID    0xfff000000000f000ull /* PFSID [63:52] and [3:0] at 15:12 */
/* PASID-based device-TLB */
#define VTD_INV_PDEV_SID(q0) VTD_FIELD(q0, 31, 16)
#define VTD_INV_PDEV_G       VTD_BIT(0)          /* qw1: all PASIDs */
#define VTD_INV_PDEV_S       VTD_BIT(11)         /* qw1: size bit */
/* page-group response */
#define VTD_INV_PGRP_PP      VTD_BIT(4)
/* interrupt entry cache */
#define VTD_INV_IEC_G        VTD_BIT(4)          /* 1 index-selective */
#define VTD_INV_IEC_IM(q0)   VTD_FIELD(q0, 31, 27)
#define VTD_INV_IEC_IIDX(q0) VTD_FIELD(q0, 47, 32)
/* wait */
#define VTD_INV_WAIT_IF      VTD_BIT(4)
#define VTD_INV_WAIT_SW      VTD_BIT(5)
#define VTD_INV_WAIT_FN      VTD_BIT(6)
#define VTD_INV_WAIT_PD      VTD_BIT(7)
#define VTD_INV_WAIT_DATA(q0) VTD_FIELD(q0, 63, 32)
#define VTD_INV_WAIT_ADDR(q1) ((q1) & ~3ull)
/* PASID-based IOTLB and PASID cache */
#define VTD_INV_PASID(q0)    VTD_FIELD(q0, 51, 32)
#define VTD_INV_PIOTLB_G_PASID 2
#define VTD_INV_PIOTLB_G_PAGE  3
#define VTD_INV_PC_G_DOMAIN  0
#define VTD_INV_PC_G_PASID   1
#define VTD_INV_PC_G_GLOBAL  3
/* reserved bits (QEMU's masks, which follow the spec) */
#define VTD_INV_CC_Q0_RSVD     0xfffc00000000f1c0ull
#define VTD_INV_IOTLB_Q0_RSVD  0xffffffff0000f100ull
#define VTD_INV_IOTLB_Q1_RSVD  0xf80ull
#define VTD_INV_IEC_Q0_RSVD    0xffff000007fff1e0ull
#define VTD_INV_DEVTLB_Q0_RSVD 0xffff0000ffe0f1f0ull
#define VTD_INV_DEVTLB_Q1_RSVD 0xffeull
#define VTD_INV_WAIT_Q0_RSVD   0xfffff100ull
#define VTD_INV_PIOTLB_Q0_RSVD 0xfff000000000f1c0ull
#define VTD_INV_PIOTLB_Q1_RSVD 0xf80ull
#define VTD_INV_PC_Q0_RSVD     0xfff000000000f1c0ull
#define VTD_INV_PDEVTLB_Q1_RSVD 0x7feull
#define VTD_INV_PGRP_Q0_RSVD   0xfff00000000001e0ull
#define VTD_INV_PGRP_Q1_RSVD   0xfffffffffffff003ull

/* ---- interrupt remapping table entry (16 B) */
#define VTD_IRTE_P           VTD_BIT(0)          /* lo */
#define VTD_IRTE_FPD         VTD_BIT(1)
#define VTD_IRTE_DM          VTD_BIT(2)
#define VTD_IRTE_RH          VTD_BIT(3)
#define VTD_IRTE_TM          VTD_BIT(4)
#define VTD_IRTE_DLM(lo)     VTD_FIELD(lo, 7, 5)
#define VTD_IRTE_DLM_SHIFT   5
#define VTD_IRTE_IM          VTD_BIT(15)         /* 1: posted format */
#define VTD_IRTE_V(lo)       VTD_FIELD(lo, 23, 16)
#define VTD_IRTE_V_SHIFT     16
#define VTD_IRTE_DST(lo)     VTD_FIELD(lo, 63, 32)
#define VTD_IRTE_DST_SHIFT   32
#define VTD_IRTE_XAPIC_DEST(lo) VTD_FIELD(lo, 47, 40)   /* xAPIC: APIC id */
#define VTD_IRTE_LO_RSVD     0x00000000ff007000ull      /* 14:12, 31:24 (xAPIC: more) */
#define VTD_IRTE_SID(hi)     VTD_FIELD(hi, 15, 0)        /* hi */
#define VTD_IRTE_SQ(hi)      VTD_FIELD(hi, 17, 16)
#define VTD_IRTE_SQ_SHIFT    16
#define VTD_IRTE_SVT(hi)     VTD_FIELD(hi, 19, 18)
#define VTD_IRTE_SVT_SHIFT   18
#define VTD_IRTE_SVT_NONE    0
#define VTD_IRTE_SVT_SID     1
#define VTD_IRTE_SVT_BUS     2
#define VTD_IRTE_HI_RSVD     0xfffffffffff00000ull

/* ---- remappable-format MSI address/data */
#define VTD_MSI_IF           VTD_BIT(4)          /* interrupt format: remappable */
#define VTD_MSI_SHV          VTD_BIT(3)
#define VTD_MSI_HANDLE(addr) (VTD_FIELD(addr, 19, 5) | VTD_FIELD(addr, 2, 2) << 15)
#define VTD_MSI_MAKE_HANDLE(h) (VTD_MAKE((h) & 0x7fff, 19, 5) | VTD_MAKE((h) >> 15, 2, 2))
#define VTD_MSI_SUBHANDLE(data) VTD_FIELD(data, 15, 0)

#endif
