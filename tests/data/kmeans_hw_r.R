# Fixtures for tests/test_metrics_kmeans.py: R's kmeans() (Hartigan-Wong, its default) from given centres.
# Regenerate from the repository root with base R only (no packages):
#   Rscript tests/data/kmeans_hw_r.R > tests/data/kmeans_hw_r.json
# Each case holds the data x, the initial centres (rows of x drawn by sample(), as kmeans(x, centers = k)
# draws them), iter.max, and R's result: cluster (1-based), iter, ifault, tot.withinss.
set.seed(20261207)
blob <- function(n, d, mu, sd) matrix(rnorm(n * d, 0, sd), n, d) + matrix(mu, n, d, byrow = TRUE)
cases <- list()
add <- function(name, x, k, iter.max = 30L) {
  centers <- x[sample.int(nrow(x), k), , drop = FALSE]
  fit <- suppressWarnings(kmeans(x, centers = centers, iter.max = iter.max, algorithm = "Hartigan-Wong"))
  cases[[name]] <<- list(x = x, centers = centers, iter_max = iter.max, cluster = fit$cluster,
                         iter = fit$iter, ifault = fit$ifault, tot_withinss = fit$tot.withinss)
}
# three round blobs in 2-d
add("blobs3", rbind(blob(60, 2, c(0, 0), 1), blob(50, 2, c(6, 0), 1), blob(40, 2, c(3, 5), 1)), 3L)
# one long band and two small groups close to each other (the layout where a single start often puts two
# centres in the band)
band <- cbind(runif(300, -6, 6), rnorm(300, 0, 0.5), matrix(rnorm(300 * 3, 0, 0.3), 300, 3))
small <- rbind(blob(30, 5, c(0, 4, 0, 0, 0), 0.4), blob(20, 5, c(1.5, 4.5, 0, 0, 0), 0.4))
add("band_small2", rbind(band, small), 3L)
add("band_small2_b", rbind(band, small), 3L)
# five overlapping clusters in 10-d
x5 <- do.call(rbind, lapply(1:5, function(i) blob(40 + 10 * i, 10, rnorm(10, 0, 2), 1.2)))
add("five_10d", x5, 5L)
add("five_10d_k7", x5, 7L)
# two clusters (k = 2 leaves the loop after the first quick-transfer stage)
add("two", rbind(blob(70, 3, c(0, 0, 0), 1), blob(30, 3, c(2, 1, 0), 1)), 2L)
# iter.max = 1: stops before convergence (ifault 2 when a second pass would be needed)
add("five_10d_iter1", x5, 6L, 1L)

num <- function(v) paste0("[", paste(sprintf("%.17g", v), collapse = ", "), "]")
mat <- function(m) paste0("[", paste(apply(m, 1, num), collapse = ", "), "]")
out <- sapply(names(cases), function(n) {
  cs <- cases[[n]]
  sprintf('"%s": {"x": %s, "centers": %s, "iter_max": %d, "cluster": %s, "iter": %d, "ifault": %d, "tot_withinss": %.17g}',
          n, mat(cs$x), mat(cs$centers), cs$iter_max, num(cs$cluster), cs$iter, cs$ifault, cs$tot_withinss)
})
cat("{", paste(out, collapse = ",\n"), "}\n", sep = "\n")
