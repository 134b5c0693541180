"""The webcam loop: capture frames, find handwritten digits, preprocess them as MNIST was made, run every
artifact of a bundle side by side, and show (or record) whether they agree. OpenCV is imported lazily."""
