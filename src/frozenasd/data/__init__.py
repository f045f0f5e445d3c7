"""What goes in: DCASE layouts and file names, audio files, waveforms, data sets, synthetic machines."""
