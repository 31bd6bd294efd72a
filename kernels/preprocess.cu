// Fused batch preprocessing for `dsprep verify-throughput`.
//
// One launch per output batch: for every output pixel of every image it resamples the decoded
// interleaved RGB8 image (triangle filter = bilinear; widened by the scale factor when shrinking,
// i.e. antialiased, the same weights as Pillow's and torchvision's antialiased bilinear),
// optionally places it in a letterbox canvas padded with a constant, optionally mirrors it
// horizontally, optionally swaps RGB->BGR, normalises with (v - mean) * inv_std and writes planar
// CHW into one contiguous [B, 3, S, S] tensor (fp32 or fp16).
//
// Self-contained on purpose: NVRTC has no CUDA headers by default, so no includes, and fp16 is
// written through the PTX conversion instruction instead of cuda_fp16.h.
//
// The CPU reference (src/throughput/preprocess.rs) implements the same arithmetic in the same order;
// tests compare the two. Keep them in step.

// Must match `ImageDesc` in src/gpu/ffi/preprocess.rs (repr(C), 64 bytes).
struct ImageDesc {
    unsigned long long src_offset;  // byte offset of the image in the decode arena
    int src_w;                      // decoded width in pixels
    int src_h;                      // decoded height
    int src_pitch;                  // bytes per decoded row (>= 3 * src_w)
    int dst_x0;                     // resized image placement inside the S x S canvas
    int dst_y0;
    int dst_w;                      // resized size (stretch: S x S)
    int dst_h;
    int flags;                      // bit 0: mirror horizontally; bit 1: no image (fill with pad)
    int reserved0;
    int reserved1;
    float hsv[3];                   // HSV jitter gains (hue, saturation, value), with FLAG_HSV
    float reserved2;
};

#define FLAG_FLIP 1
#define FLAG_EMPTY 2
#define FLAG_HSV 4

// YOLO's HSV jitter on one RGB pixel (0..255), in OpenCV's 8-bit HSV ranges (hue 0..180):
// hue * gain mod 180, saturation and value * gain clipped to 0..255. The CPU reference is
// src/throughput/hsv.rs (same arithmetic, same order).
__device__ __forceinline__ void hsv_jitter(float* rgb, const float* gains) {
    float r = rgb[0], g = rgb[1], b = rgb[2];
    float v = fmaxf(fmaxf(r, g), b);
    float mn = fminf(fminf(r, g), b);
    float delta = v - mn;
    float s = v > 0.0f ? 255.0f * delta / v : 0.0f;
    float h;
    if (delta <= 0.0f) h = 0.0f;
    else if (v == r) h = 60.0f * (g - b) / delta;
    else if (v == g) h = 120.0f + 60.0f * (b - r) / delta;
    else h = 240.0f + 60.0f * (r - g) / delta;
    if (h < 0.0f) h += 360.0f;
    h = h * 0.5f;
    float h2 = h * gains[0];
    h2 = h2 - 180.0f * floorf(h2 / 180.0f);
    float s2 = fminf(fmaxf(s * gains[1], 0.0f), 255.0f);
    float v2 = fminf(fmaxf(v * gains[2], 0.0f), 255.0f);
    float sat = s2 / 255.0f;
    float hh = (h2 * 2.0f) / 60.0f;
    float sector = floorf(hh);
    float f = hh - sector;
    float p = v2 * (1.0f - sat);
    float q = v2 * (1.0f - sat * f);
    float t = v2 * (1.0f - sat * (1.0f - f));
    int k = (int)sector;
    if (k == 0) { rgb[0] = v2; rgb[1] = t; rgb[2] = p; }
    else if (k == 1) { rgb[0] = q; rgb[1] = v2; rgb[2] = p; }
    else if (k == 2) { rgb[0] = p; rgb[1] = v2; rgb[2] = t; }
    else if (k == 3) { rgb[0] = p; rgb[1] = q; rgb[2] = v2; }
    else if (k == 4) { rgb[0] = t; rgb[1] = p; rgb[2] = v2; }
    else { rgb[0] = v2; rgb[1] = p; rgb[2] = q; }
}

__device__ __forceinline__ float tri_filter(float x) {
    x = fabsf(x);
    return x < 1.0f ? 1.0f - x : 0.0f;
}

// Resampling window of one output coordinate, Pillow's precompute_coeffs: returns the first
// source index and the number of taps; weights are tri((i + first - center + 0.5) * inv_fs).
__device__ __forceinline__ void window(int o, float scale, int in_size, float* center, float* inv_fs,
                                       int* first, int* count) {
    float fs = scale > 1.0f ? scale : 1.0f;  // filter scale: widen only when shrinking
    float support = fs;                       // triangle support 1.0 * filter scale
    float c = ((float)o + 0.5f) * scale;
    int lo = (int)(c - support + 0.5f);
    if (lo < 0) lo = 0;
    int hi = (int)(c + support + 0.5f);
    if (hi > in_size) hi = in_size;
    *center = c;
    *inv_fs = 1.0f / fs;
    *first = lo;
    *count = hi - lo;
}

__device__ __forceinline__ void sample(const unsigned char* __restrict__ arena, const ImageDesc& d,
                                       int cx, int cy, float* rgb) {
    const unsigned char* src = arena + d.src_offset;
    float sx = (float)d.src_w / (float)d.dst_w;
    float sy = (float)d.src_h / (float)d.dst_h;
    float xc, xi, yc, yi;
    int x0, nx, y0, ny;
    window(cx, sx, d.src_w, &xc, &xi, &x0, &nx);
    window(cy, sy, d.src_h, &yc, &yi, &y0, &ny);
    float wxs = 0.0f;
    for (int i = 0; i < nx; ++i) wxs += tri_filter(((float)(i + x0) - xc + 0.5f) * xi);
    float wys = 0.0f;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
    for (int j = 0; j < ny; ++j) {
        float wy = tri_filter(((float)(j + y0) - yc + 0.5f) * yi);
        wys += wy;
        const unsigned char* row = src + (long long)(j + y0) * d.src_pitch;
        float r0 = 0.0f, r1 = 0.0f, r2 = 0.0f;
        for (int i = 0; i < nx; ++i) {
            float wx = tri_filter(((float)(i + x0) - xc + 0.5f) * xi);
            const unsigned char* p = row + 3 * (i + x0);
            r0 += wx * (float)p[0];
            r1 += wx * (float)p[1];
            r2 += wx * (float)p[2];
        }
        a0 += wy * r0;
        a1 += wy * r1;
        a2 += wy * r2;
    }
    float norm = 1.0f / (wxs * wys);
    rgb[0] = a0 * norm;
    rgb[1] = a1 * norm;
    rgb[2] = a2 * norm;
}

__device__ __forceinline__ void pixel(const unsigned char* __restrict__ arena,
                                      const ImageDesc* __restrict__ descs, int side, float pad,
                                      int x, int y, int z, float* rgb) {
    const ImageDesc d = descs[z];
    int cx = (d.flags & FLAG_FLIP) ? side - 1 - x : x;
    cx -= d.dst_x0;
    int cy = y - d.dst_y0;
    bool inside = !(d.flags & FLAG_EMPTY) && cx >= 0 && cy >= 0 && cx < d.dst_w && cy < d.dst_h;
    if (inside) {
        sample(arena, d, cx, cy, rgb);
    } else {
        rgb[0] = pad;
        rgb[1] = pad;
        rgb[2] = pad;
    }
    if (d.flags & FLAG_HSV) hsv_jitter(rgb, d.hsv);
}

extern "C" __global__ void preprocess_f32(const unsigned char* __restrict__ arena,
                                          const ImageDesc* __restrict__ descs,
                                          float* __restrict__ out, int side, int batch,
                                          float m0, float m1, float m2,
                                          float s0, float s1, float s2,
                                          float pad, int bgr) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int z = blockIdx.z;
    if (x >= side || y >= side || z >= batch) return;
    float rgb[3];
    pixel(arena, descs, side, pad, x, y, z, rgb);
    float v0 = (rgb[0] - m0) * s0;
    float v1 = (rgb[1] - m1) * s1;
    float v2 = (rgb[2] - m2) * s2;
    long long plane = (long long)side * side;
    long long base = (long long)z * 3 * plane + (long long)y * side + x;
    out[base + (bgr ? 2 : 0) * plane] = v0;
    out[base + plane] = v1;
    out[base + (bgr ? 0 : 2) * plane] = v2;
}

__device__ __forceinline__ unsigned short to_half(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

extern "C" __global__ void preprocess_f16(const unsigned char* __restrict__ arena,
                                          const ImageDesc* __restrict__ descs,
                                          unsigned short* __restrict__ out, int side, int batch,
                                          float m0, float m1, float m2,
                                          float s0, float s1, float s2,
                                          float pad, int bgr) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int z = blockIdx.z;
    if (x >= side || y >= side || z >= batch) return;
    float rgb[3];
    pixel(arena, descs, side, pad, x, y, z, rgb);
    float v0 = (rgb[0] - m0) * s0;
    float v1 = (rgb[1] - m1) * s1;
    float v2 = (rgb[2] - m2) * s2;
    long long plane = (long long)side * side;
    long long base = (long long)z * 3 * plane + (long long)y * side + x;
    out[base + (bgr ? 2 : 0) * plane] = to_half(v0);
    out[base + plane] = to_half(v1);
    out[base + (bgr ? 0 : 2) * plane] = to_half(v2);
}
