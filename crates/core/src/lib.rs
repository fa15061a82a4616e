//! Core types shared by every part of livetalk.
