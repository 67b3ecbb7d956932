#ifndef SMOOTHD_CPU_FEATURES_H
#define SMOOTHD_CPU_FEATURES_H
/// 1 when the CPU and OS support AVX2 and FMA (the kernel variant built for -target-cpu haswell).
int smoothd_cpu_has_avx2(void);
/// 1 when the CPU and OS support AVX-512 F/BW/DQ/VL with FMA (the variant built for -target-cpu skylake-avx512).
int smoothd_cpu_has_avx512(void);
#endif
