#ifndef SMOOTHD_CPU_FEATURES_H
#define SMOOTHD_CPU_FEATURES_H
/// 1 when the CPU and OS support AVX2 and FMA (the kernel variant built for -target-cpu haswell).
int smoothd_cpu_has_avx2(void);
#endif
