/* Hides groups of x86 CPU features from a process, so that the libraries in it (ONNX Runtime,
 * OpenBLAS, numpy, PyTorch) choose the kernels they would choose on a CPU without them.
 *
 * Loaded with LD_PRELOAD (see cpu_kinds.py); FROZENASD_HIDE_CPU names the groups to hide, separated by
 * commas: avx512 (every AVX-512 extension), avx512-ext (those beyond Skylake-SP's F, CD, BW, DQ, VL),
 * vnni (AVX512_VNNI, AVX-VNNI, AVX-VNNI-INT8), amx, avx-ext (AVX-IFMA, AVX-NE-CONVERT).
 * Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, "cpuid_fault" in /proc/cpuinfo) makes every CPUID
 * instruction raise SIGSEGV; the handler runs the real instruction with faulting briefly lifted, clears
 * the hidden bits of leaf 7 and resumes after it. The setting is per thread and inherited by the
 * threads and processes created afterwards. A SIGSEGV that is not a CPUID falls through to the default
 * action (the process dies as it would have). Python's faulthandler replaces this handler: do not
 * enable it in such a process.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

/* Bits cleared in leaf 7: subleaf 0's EBX, ECX, EDX, then subleaf 1's EAX and EDX. */
struct group {
    const char *name;
    unsigned masks[5];
};

static const struct group GROUPS[] = {
    /* F DQ IFMA PF ER CD BW VL | VBMI VBMI2 VNNI BITALG VPOPCNTDQ | 4VNNIW 4FMAPS VP2INTERSECT FP16 | BF16 */
    {"avx512",
     {BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31),
      BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14), BIT(2) | BIT(3) | BIT(8) | BIT(23), BIT(5), 0}},
    /* the above less F, DQ, CD, BW, VL */
    {"avx512-ext",
     {BIT(21) | BIT(26) | BIT(27), BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14),
      BIT(2) | BIT(3) | BIT(8) | BIT(23), BIT(5), 0}},
    /* AVX512_VNNI | AVX512_4VNNIW | AVX-VNNI | AVX-VNNI-INT8 */
    {"vnni", {0, BIT(11), BIT(2), BIT(4), BIT(4)}},
    /* AMX-BF16 AMX-TILE AMX-INT8 | AMX-FP16 */
    {"amx", {0, 0, BIT(22) | BIT(24) | BIT(25), BIT(21), 0}},
    /* AVX-IFMA | AVX-NE-CONVERT */
    {"avx-ext", {0, 0, 0, BIT(23), BIT(5)}},
};

static unsigned hidden[5];

static int cpuid_enabled(int on) { return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    (void)sig;
    (void)info;
    greg_t *r = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)r[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {
        signal(SIGSEGV, SIG_DFL);
        return;
    }
    unsigned leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX], a, b, c, d;
    cpuid_enabled(1);
    __cpuid_count(leaf, sub, a, b, c, d);
    cpuid_enabled(0);
    if (leaf == 7 && sub == 0) {
        b &= ~hidden[0];
        c &= ~hidden[1];
        d &= ~hidden[2];
    } else if (leaf == 7 && sub == 1) {
        a &= ~hidden[3];
        d &= ~hidden[4];
    }
    r[REG_RAX] = a;
    r[REG_RBX] = b;
    r[REG_RCX] = c;
    r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

static void hide(const char *name, size_t length) {
    for (size_t g = 0; g < sizeof GROUPS / sizeof GROUPS[0]; g++) {
        if (strlen(GROUPS[g].name) == length && strncmp(GROUPS[g].name, name, length) == 0) {
            for (int i = 0; i < 5; i++) hidden[i] |= GROUPS[g].masks[i];
            return;
        }
    }
    fprintf(stderr, "hide_cpu_features: unknown group '%.*s' in FROZENASD_HIDE_CPU\n", (int)length, name);
    _exit(98);
}

__attribute__((constructor)) static void hide_cpu_features(void) {
    const char *groups = getenv("FROZENASD_HIDE_CPU");
    if (groups == NULL || *groups == '\0') return;
    for (const char *p = groups; *p;) {
        size_t length = strcspn(p, ",");
        if (length) hide(p, length);
        p += length + (p[length] == ',');
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, NULL);
    if (cpuid_enabled(0) != 0) {
        perror("hide_cpu_features: arch_prctl(ARCH_SET_CPUID)");
        _exit(97);
    }
}
