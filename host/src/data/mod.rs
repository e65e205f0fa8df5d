//! Datasets: readers (IDX, CIFAR, image folders, the embedded Fashion-MNIST subset), splits, augmentation.
