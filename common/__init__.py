"""What every room uses: the user-facing error, files through tf.io.gfile, the command-line
wrapper, optional matplotlib. Depends on nothing of this project."""
