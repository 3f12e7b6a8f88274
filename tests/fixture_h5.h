/* fixture_h5 — read oracle fixtures (HDF5 files written by tools/oracle scripts with h5py) in tests.
 *
 *   fx_open(path)                       open read-only; exits the test with a message when missing
 *   fx_f32(f, "grp/name", &n)           malloc'ed float array (converted from any float type), n elements
 *   fx_i32(f, "grp/name", &n)           malloc'ed int32 array
 *   fx_attr_d(f, "grp", "name")         a numeric attribute as double
 *   fx_relerr(a, ref, n)                max|a-ref| / max|ref|  (the issues' tolerance measure)
 */
#ifndef ORPO_FIXTURE_H5_H
#define ORPO_FIXTURE_H5_H

#include <hdf5.h>
#include <hdf5_hl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline hid_t fx_open(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "fixture %s: cannot open (regenerate with tools/oracle)\n", path);
        exit(1);
    }
    return f;
}

static inline size_t fx_numel(hid_t f, const char *name) {
    hsize_t dims[8];
    int rank = 0;
    if (H5LTget_dataset_ndims(f, name, &rank) < 0 || rank > 8 ||
        H5LTget_dataset_info(f, name, dims, NULL, NULL) < 0) {
        fprintf(stderr, "fixture: no dataset %s\n", name);
        exit(1);
    }
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
    return n;
}

static inline float *fx_f32(hid_t f, const char *name, size_t *n) {
    *n = fx_numel(f, name);
    float *p = malloc(sizeof(float) * (*n ? *n : 1));
    if (H5LTread_dataset_float(f, name, p) < 0) {
        fprintf(stderr, "fixture: cannot read %s as float\n", name);
        exit(1);
    }
    return p;
}

static inline int32_t *fx_i32(hid_t f, const char *name, size_t *n) {
    *n = fx_numel(f, name);
    int32_t *p = malloc(sizeof(int32_t) * (*n ? *n : 1));
    if (H5LTread_dataset_int(f, name, p) < 0) {
        fprintf(stderr, "fixture: cannot read %s as int\n", name);
        exit(1);
    }
    return p;
}

static inline double fx_attr_d(hid_t f, const char *obj, const char *name) {
    double v = 0;
    if (H5LTget_attribute_double(f, obj, name, &v) < 0) {
        fprintf(stderr, "fixture: no attribute %s on %s\n", name, obj);
        exit(1);
    }
    return v;
}

static inline double fx_relerr(const float *a, const float *ref, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return mr > 0 ? md / mr : md;
}

#endif
