// The word a row is copied in: the widest of 16, 8, 4 or 2 bytes that tiles a row exactly
// (_cuda.vector_bytes), given as VEC by the Python that compiles the file.
#pragma once

#if VEC == 16
typedef uint4 vec_t;
#elif VEC == 8
typedef uint2 vec_t;
#elif VEC == 4
typedef unsigned int vec_t;
#else
typedef unsigned short vec_t;
#endif
